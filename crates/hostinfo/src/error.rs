use std::fmt;

/// Says which discovery command printed something this crate could not make
/// sense of, and why, so an operator can rerun that command on the host and
/// see the problem for themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    command: &'static str,
    reason: String,
}

impl ParseError {
    pub(crate) fn new(command: &'static str, reason: impl Into<String>) -> Self {
        Self {
            command,
            reason: reason.into(),
        }
    }

    /// The command whose output was rejected, exactly as Parasol runs it
    /// (one of the crate's command constants), so callers can group or
    /// retry failures per command.
    pub fn command(&self) -> &'static str {
        self.command
    }

    /// What was wrong with the output, including a quoted excerpt of the
    /// offending line where there is one.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unexpected output from `{}`: {}",
            self.command, self.reason
        )
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_command_and_the_reason() {
        let err = ParseError::new(crate::FREE, "no Mem: row");
        assert_eq!(
            err.to_string(),
            "unexpected output from `free -b`: no Mem: row"
        );
        assert_eq!(err.command(), "free -b");
        assert_eq!(err.reason(), "no Mem: row");
    }
}
