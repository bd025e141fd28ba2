//! Printing the demo as a narrated terminal session, and keeping score.

/// Width of the section rulers.
const WIDTH: usize = 78;

/// `== TITLE ======...`, after a blank line.
pub fn section(title: &str) {
    let fill = WIDTH.saturating_sub(title.len() + 4).max(3);
    println!("\n== {title} {}", "=".repeat(fill));
}

/// Narration: a shell comment.
pub fn note(text: &str) {
    for line in text.lines() {
        println!("# {line}");
    }
}

/// A command as typed at a prompt that says where it runs (`host`, `world`,
/// `agent`, ...).
pub fn shell(place: &str, command_line: &str) {
    println!("[{place}]$ {command_line}");
}

/// What a command printed, as it printed it (a missing final newline is
/// added).
pub fn output(text: &str) {
    for line in text.lines() {
        println!("{line}");
    }
}

/// One pass/fail line of the story, also kept for the summary.
pub struct Check {
    pub passed: bool,
    pub text: String,
}

/// Everything the demo checked, in order.
#[derive(Default)]
pub struct Checks(Vec<Check>);

impl Checks {
    /// Prints `✓ text` or `✗ text` and remembers it; returns `passed`.
    pub fn record(&mut self, passed: bool, text: impl Into<String>) -> bool {
        let text = text.into();
        println!("{} {text}", mark(passed));
        self.0.push(Check { passed, text });
        passed
    }

    pub fn all(&self) -> &[Check] {
        &self.0
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.0.iter().filter(|check| !check.passed)
    }
}

pub fn mark(passed: bool) -> &'static str {
    if passed { "✓" } else { "✗" }
}
