//! One readable line for an error and its causes.

use std::error::Error;

/// The error followed by each cause the message does not already include
/// (some messages embed their cause, others only link it as `source()`).
pub fn full_message(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let text = error.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        cause = error.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn causes_are_appended_once() {
        let error = Outer(Middle(std::io::Error::from_raw_os_error(22)));
        assert_eq!(
            full_message(&error),
            "outer: middle: Invalid argument (os error 22)"
        );
    }
}
