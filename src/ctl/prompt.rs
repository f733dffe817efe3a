//! click-style prompts: `text [default]: ` and `text [y/N]: `, read from stdin (a pipe works too,
//! as with patronictl); end of input aborts (`Aborted!`, exit code 1).

use super::CtlError;
use std::io::{BufRead, Write};

fn read_line(shown: &str, hide: bool) -> Result<String, CtlError> {
    let mut err = std::io::stdout().lock();
    let _ = err.write_all(shown.as_bytes());
    let _ = err.flush();
    drop(err);
    if hide {
        // no echo on a terminal while the password is typed
        let _ =
            std::process::Command::new("stty").arg("-echo").stdin(std::process::Stdio::inherit()).status();
    }
    let mut line = String::new();
    let n = std::io::stdin().lock().read_line(&mut line);
    if hide {
        let _ = std::process::Command::new("stty").arg("echo").stdin(std::process::Stdio::inherit()).status();
        eprintln!();
    }
    match n {
        Ok(0) | Err(_) => {
            eprintln!();
            Err(CtlError::Failed("Aborted!".into()))
        }
        Ok(_) => Ok(line.trim_end_matches(['\n', '\r']).to_string()),
    }
}

/// `click.prompt(text, default=…)`: the answer, or `default` for an empty answer. Without a default
/// an empty answer asks again.
pub fn prompt(text: &str, default: Option<&str>) -> Result<String, CtlError> {
    let shown = match default {
        Some(d) => format!("{text} [{d}]: "),
        None => format!("{text}: "),
    };
    loop {
        let answer = read_line(&shown, false)?;
        if !answer.is_empty() {
            return Ok(answer);
        }
        if let Some(d) = default {
            return Ok(d.to_string());
        }
    }
}

/// `click.prompt(text, hide_input=True)`.
pub fn password(text: &str) -> Result<String, CtlError> {
    read_line(&format!("{text}: "), std::io::IsTerminal::is_terminal(&std::io::stdin()))
}

/// `click.confirm(text)`: `y`/`yes` → true, `n`/`no`/empty → false, anything else asks again.
pub fn confirm(text: &str) -> Result<bool, CtlError> {
    loop {
        match parse_yes_no(&read_line(&format!("{text} [y/N]: "), false)?) {
            Some(v) => return Ok(v),
            None => eprintln!("Error: invalid input"),
        }
    }
}

/// click's answer rule for `confirm` (default no).
pub fn parse_yes_no(answer: &str) -> Option<bool> {
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Some(true),
        "" | "n" | "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirm_answers_follow_click() {
        assert_eq!(parse_yes_no("Y"), Some(true));
        assert_eq!(parse_yes_no("yes"), Some(true));
        assert_eq!(parse_yes_no(""), Some(false));
        assert_eq!(parse_yes_no("no"), Some(false));
        assert_eq!(parse_yes_no("maybe"), None);
    }
}
