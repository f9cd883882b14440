//! The error type hooks return: a message for the log (never sent to the client), with an
//! optional source chain.

/// An error raised by a hook. Its text is logged, never sent to the client.
///
/// Build one from a message ([`HookError::new`], or `From<String>`/`From<&str>`), or wrap an
/// error to keep its source chain ([`HookError::wrap`], [`HookError::context`], or `?` on a
/// `Box<dyn Error + Send + Sync>`, [`std::io::Error`] or [`serde_json::Error`]).
#[derive(Debug)]
pub struct HookError {
    message: Option<String>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl HookError {
    /// An error with the text of `e` (anything displayable) and no source.
    pub fn new(e: impl std::fmt::Display) -> Self {
        Self {
            message: Some(e.to_string()),
            source: None,
        }
    }

    /// Wraps an error: it shows as `e` and keeps `e`'s source chain.
    pub fn wrap(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: None,
            source: Some(Box::new(e)),
        }
    }

    /// An error reading `message`, caused by `source`.
    pub fn context(
        message: impl std::fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: Some(message.to_string()),
            source: Some(Box::new(source)),
        }
    }
}

impl std::fmt::Display for HookError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.message, &self.source) {
            (Some(message), _) => f.write_str(message),
            (None, Some(source)) => source.fmt(f),
            (None, None) => f.write_str("hook failed"),
        }
    }
}

impl std::error::Error for HookError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let source = self.source.as_deref()?;
        if self.message.is_some() {
            Some(source)
        } else {
            // A wrapped error shows as itself: its own source comes next.
            source.source()
        }
    }
}

impl From<String> for HookError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for HookError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for HookError {
    fn from(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self {
            message: None,
            source: Some(e),
        }
    }
}

impl From<std::io::Error> for HookError {
    fn from(e: std::io::Error) -> Self {
        Self::wrap(e)
    }
}

impl From<serde_json::Error> for HookError {
    fn from(e: serde_json::Error) -> Self {
        Self::wrap(e)
    }
}
