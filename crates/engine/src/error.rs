//! The engine's one error type.

/// Everything that can go wrong when configuring or running a backtest.
///
/// Every variant renders as one lowercase line without a trailing period, so the CLI can
/// print it as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The strategy name is not in the registry.
    #[error("unknown strategy `{name}` (expected one of: {expected})")]
    UnknownStrategy {
        /// The name as given.
        name: String,
        /// The registered names, comma-separated.
        expected: String,
    },
    /// A `NAME=VALUE` pair names a parameter the strategy does not have.
    #[error("unknown parameter `{name}` for {strategy} (expected one of: {expected})")]
    UnknownParameter {
        /// The strategy being configured.
        strategy: String,
        /// The parameter name as given.
        name: String,
        /// The parameter names the strategy accepts, comma-separated.
        expected: String,
    },
    /// A parameter was given more than once.
    #[error("parameter `{name}` given more than once")]
    DuplicateParameter {
        /// The repeated name.
        name: String,
    },
    /// A parameter value does not parse or is outside the strategy's domain.
    #[error("invalid {name} `{value}`: expected {expected}")]
    InvalidParameter {
        /// The parameter name.
        name: String,
        /// The value as given (or as held, for typed params).
        value: String,
        /// The domain, in words (`an integer >= 1`).
        expected: String,
    },
    /// Budget, fee or session range are out of range.
    #[error("invalid run options: {0}")]
    InvalidOptions(String),
    /// The market view is inconsistent (lengths, bounds, prices).
    #[error("invalid market: {0}")]
    InvalidMarket(String),
    /// The strategy cannot run on this market (for example momentum on minute bars).
    #[error("unsupported: {0}")]
    Unsupported(String),
}
