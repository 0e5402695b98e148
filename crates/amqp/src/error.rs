//! Errors: [`AmqpError`] for the library API, [`Fault`] for protocol errors sent as `channel.close` or
//! `connection.close` with RabbitMQ's reply codes and texts.

/// Why the broker could not start or a management operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The storage engine failed.
    #[error("amqp storage: {0}")]
    Storage(#[from] strata_storage::StorageError),
    /// A stored definition or message could not be decoded.
    #[error("amqp storage: corrupt {0}")]
    Corrupt(String),
    /// Socket I/O failed.
    #[error("amqp i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Reply codes (AMQP 0-9-1 constants).
pub mod code {
    /// Content too large (basic.return).
    pub const CONTENT_TOO_LARGE: u16 = 311;
    /// No route (basic.return for mandatory).
    pub const NO_ROUTE: u16 = 312;
    /// Connection closed by the broker (shutdown).
    pub const CONNECTION_FORCED: u16 = 320;
    /// Access refused.
    pub const ACCESS_REFUSED: u16 = 403;
    /// Not found.
    pub const NOT_FOUND: u16 = 404;
    /// Resource locked (exclusive queue of another connection).
    pub const RESOURCE_LOCKED: u16 = 405;
    /// Precondition failed.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// Malformed frame.
    pub const FRAME_ERROR: u16 = 501;
    /// Malformed method.
    pub const SYNTAX_ERROR: u16 = 502;
    /// A method not allowed here.
    pub const COMMAND_INVALID: u16 = 503;
    /// A channel that is not open, or channel numbering misuse.
    pub const CHANNEL_ERROR: u16 = 504;
    /// A frame of the wrong type at this point.
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// Not allowed (vhost, tuning limits).
    pub const NOT_ALLOWED: u16 = 530;
    /// Not implemented.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// Internal error.
    pub const INTERNAL_ERROR: u16 = 541;
}

/// A protocol error: a soft one closes the channel, a hard one the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The reply code.
    pub code: u16,
    /// The reply text, RabbitMQ's `NAME - detail` form.
    pub text: String,
    /// Whether it closes the connection.
    pub hard: bool,
}

fn name(code: u16) -> &'static str {
    match code {
        code::ACCESS_REFUSED => "ACCESS_REFUSED",
        code::NOT_FOUND => "NOT_FOUND",
        code::RESOURCE_LOCKED => "RESOURCE_LOCKED",
        code::PRECONDITION_FAILED => "PRECONDITION_FAILED",
        code::CONNECTION_FORCED => "CONNECTION_FORCED",
        code::FRAME_ERROR => "FRAME_ERROR",
        code::SYNTAX_ERROR => "SYNTAX_ERROR",
        code::COMMAND_INVALID => "COMMAND_INVALID",
        code::CHANNEL_ERROR => "CHANNEL_ERROR",
        code::UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
        code::NOT_ALLOWED => "NOT_ALLOWED",
        code::NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
        _ => "INTERNAL_ERROR",
    }
}

impl Fault {
    /// A channel error with `detail` after the code's name.
    pub fn channel(code: u16, detail: impl std::fmt::Display) -> Fault {
        Fault {
            code,
            text: format!("{} - {detail}", name(code)),
            hard: false,
        }
    }

    /// A connection error with `detail` after the code's name.
    pub fn connection(code: u16, detail: impl std::fmt::Display) -> Fault {
        Fault {
            code,
            text: format!("{} - {detail}", name(code)),
            hard: true,
        }
    }

    /// 404 for a missing queue, RabbitMQ's text.
    pub fn no_queue(name: &str, vhost: &str) -> Fault {
        Fault::channel(
            code::NOT_FOUND,
            format!("no queue '{name}' in vhost '{vhost}'"),
        )
    }

    /// 404 for a missing exchange, RabbitMQ's text.
    pub fn no_exchange(name: &str, vhost: &str) -> Fault {
        Fault::channel(
            code::NOT_FOUND,
            format!("no exchange '{name}' in vhost '{vhost}'"),
        )
    }

    /// The reply text as a short string (truncated to 255 bytes on a character boundary).
    pub fn short_text(&self) -> String {
        let mut end = self.text.len().min(255);
        while !self.text.is_char_boundary(end) {
            end -= 1;
        }
        self.text[..end].to_owned()
    }
}

/// Shorthand for results of protocol operations.
pub type FaultResult<T> = Result<T, Fault>;
