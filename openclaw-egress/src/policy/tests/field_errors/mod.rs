//! Errors in the values of fields, one section at a time.

use super::*;

mod dns;
mod header;
mod rules;
mod selector;
