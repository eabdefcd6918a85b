//! Everything `aliot` writes on stdout and stderr goes through here: results on stdout, status
//! notes and errors on stderr. The workspace lints (`print_stdout`, `print_stderr`) and this
//! crate's `clippy.toml` (`std::io::stdout` and `std::io::stderr` disallowed) leave this module
//! the only one allowed to.
//!
//! Writes to stdout are flushed at once (a reader on a pipe sees each line as it happens) and
//! return their error: a closed pipe (`aliot … | head -1`) is a `BrokenPipe` error, which `main`
//! turns into exit status 0. Writes to stderr are best effort: there is nowhere left to report
//! their failure.

use std::io::{self, Write as _};

/// Writes `text` on stdout as it is.
///
/// # Errors
/// The write's, e.g. `BrokenPipe` when the reader is gone.
#[allow(clippy::disallowed_methods, reason = "the CLI's output module")]
pub(crate) fn write(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes `bytes` on stdout as they are (a downloaded file).
///
/// # Errors
/// The write's, e.g. `BrokenPipe` when the reader is gone.
#[cfg(feature = "hub")]
#[allow(clippy::disallowed_methods, reason = "the CLI's output module")]
pub(crate) fn write_bytes(bytes: &[u8]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// Writes `line` and a newline on stdout.
///
/// # Errors
/// The write's, e.g. `BrokenPipe` when the reader is gone.
#[allow(clippy::disallowed_methods, reason = "the CLI's output module")]
pub(crate) fn line(line: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

/// Writes `line` and a newline on stderr: status, progress notes, errors.
#[allow(clippy::disallowed_methods, reason = "the CLI's output module")]
pub(crate) fn note(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Stdout itself, for a library that writes its own output (`aliot bench --worker`).
#[cfg(feature = "bench")]
#[allow(clippy::disallowed_methods, reason = "the CLI's output module")]
pub(crate) fn stdout() -> io::Stdout {
    io::stdout()
}

/// Stderr itself, where the log lines (`tracing`) go.
#[allow(clippy::disallowed_methods, reason = "the CLI's output module")]
pub(crate) fn log_writer() -> io::Stderr {
    io::stderr()
}

/// Quotes `s` for a POSIX shell: bare when it only has safe characters, otherwise in single
/// quotes with each `'` written as `'\''`.
pub(crate) fn shell_quote(s: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn shell_quote_leaves_safe_words_bare_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com"),
            "a14Xib5kdYd.iot-as-mqtt.cn-shanghai.aliyuncs.com"
        );
        assert_eq!(shell_quote("dn&pk"), "'dn&pk'");
        assert_eq!(shell_quote("a|b"), "'a|b'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote("/sys/pk/dn/thing/#"), "'/sys/pk/dn/thing/#'");
        assert_eq!(shell_quote("/tmp/a-b"), "/tmp/a-b");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
    }
}
