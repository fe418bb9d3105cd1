//! Card PINs: from `--pin-file`, `HSMKIT_PIN_FILE`, or a hidden prompt.

use std::path::PathBuf;

use hsmkit_backend::{Error, ErrorKind, Op, Pin, Result};
use zeroize::Zeroizing;

use crate::Global;

/// Where PINs come from.
pub enum PinSource {
    /// Lines of a file, used in order.
    File { path: PathBuf, lines: Vec<Pin>, next: usize },
    /// The terminal, without echo.
    Prompt,
}

impl PinSource {
    /// The source the options and environment name.
    pub fn from(g: &Global) -> Result<Self> {
        let path = g.pin_file.clone().or_else(|| std::env::var_os("HSMKIT_PIN_FILE").map(PathBuf::from));
        let Some(path) = path else {
            return Ok(PinSource::Prompt);
        };
        let text = Zeroizing::new(
            hsmkit_emulator::fsio::read_text_bounded(&path, hsmkit_emulator::fsio::MAX_TEXT_BYTES).map_err(|e| {
                Error::new(ErrorKind::NotFound, Op::ReadCard)
                    .detail(format!("cannot read the PIN file {}: {e}", path.display()))
                    .hint("give --pin-file FILE (or HSMKIT_PIN_FILE) with one PIN a line, card by card")
            })?,
        );
        let lines = text.lines().map(|l| Pin::from(l.trim_end_matches('\r').to_string())).collect();
        Ok(PinSource::File { path, lines, next: 0 })
    }

    /// How many PINs a file holds (`None` for the prompt).
    pub fn available(&self) -> Option<usize> {
        match self {
            PinSource::File { lines, next, .. } => Some(lines.len() - next),
            PinSource::Prompt => None,
        }
    }

    /// The next PIN, for `what` (for example "card 2 of 3").
    pub fn next(&mut self, what: &str, confirm: bool) -> Result<Pin> {
        match self {
            PinSource::File { path, lines, next } => {
                let pin = lines.get(*next).cloned().ok_or_else(|| {
                    Error::new(ErrorKind::ArgumentsBad, Op::ReadCard)
                        .detail(format!("the PIN file {} has no line for {what}", path.display()))
                        .hint("add one PIN a line, card by card, in order")
                })?;
                *next += 1;
                Ok(pin)
            }
            PinSource::Prompt => {
                let ask = |prompt: String| {
                    rpassword::prompt_password(prompt).map(Pin::from).map_err(|e| {
                        Error::new(ErrorKind::Io, Op::ReadCard)
                            .detail(format!("cannot read a PIN from the terminal: {e}"))
                            .hint("run in a terminal, or give --pin-file FILE")
                    })
                };
                let pin = ask(format!("Enter PIN for {what}: "))?;
                if confirm {
                    use secrecy::ExposeSecret;
                    let again = ask(format!("Confirm PIN for {what}: "))?;
                    if again.expose_secret() != pin.expose_secret() {
                        return Err(Error::new(ErrorKind::PinIncorrect, Op::ReadCard)
                            .detail(format!("the two PINs for {what} differ"))
                            .hint("run the command again"));
                    }
                }
                Ok(pin)
            }
        }
    }
}
