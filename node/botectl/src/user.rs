//! `botectl user add --file FILE NAME`: adds a user to a router's users
//! file, or gives an existing one a new password. The password is read
//! from standard input (`--password-stdin`, or whenever stdin is not a
//! terminal: its first line) or prompted for twice without echo; the file
//! keeps only its salted SCRAM-SHA-256 keys (`bote_auth::users`, the
//! format `boted` reads).

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use bote_auth::scram::{DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS};
use bote_auth::{Credential, users};
use clap::{Args, Subcommand};

/// `botectl user`.
#[derive(Debug, Clone, Args)]
pub struct UserOptions {
    #[command(subcommand)]
    pub operation: UserOperation,
}

#[derive(Debug, Clone, Subcommand)]
pub enum UserOperation {
    /// Add a user (or set a user's password) in a users file, creating the
    /// file if needed. Only salted keys are written, never the password.
    Add {
        /// The users file (`[router] users-file` of boted).
        #[arg(long)]
        file: PathBuf,
        /// The user name (no ':', spaces or control characters).
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// PBKDF2 iterations of the salted key (RFC 7677: at least 4096).
        #[arg(long, default_value_t = DEFAULT_ITERATIONS,
              value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS)))]
        iterations: u32,
    },
}

/// Runs `botectl user ...`; the message says what was done.
pub fn run(options: &UserOptions) -> Result<String, String> {
    match &options.operation {
        UserOperation::Add {
            file,
            name,
            password_stdin,
            iterations,
        } => {
            if !users::valid_name(name) {
                return Err(format!(
                    "user name \"{name}\" is not allowed (not empty; no ':', whitespace or control characters)"
                ));
            }
            let password = read_password(name, *password_stdin)?;
            if password.is_empty() {
                return Err("the password is empty".into());
            }
            let credential = Credential::new(&password, *iterations);
            let replaced = users::set_user(file, name, &credential).map_err(|e| e.to_string())?;
            Ok(format!(
                "{} user \"{name}\" in {}",
                if replaced { "updated" } else { "added" },
                file.display()
            ))
        }
    }
}

fn read_password(name: &str, from_stdin: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    if from_stdin || !stdin.is_terminal() {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let first = prompt(&format!("Password for {name}: "))?;
    let second = prompt("Again: ")?;
    if first != second {
        return Err("the passwords do not match".into());
    }
    Ok(first)
}

/// Reads one line from the terminal with echo off.
fn prompt(text: &str) -> Result<String, String> {
    let mut err = std::io::stderr();
    let _ = write!(err, "{text}");
    let _ = err.flush();
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a terminal fd.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    let echo_off = unsafe { libc::tcgetattr(fd, &mut saved) } == 0;
    if echo_off {
        let mut quiet = saved;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a termios copied from tcgetattr, echo cleared.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) };
    }
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if echo_off {
        // SAFETY: restores the settings read above.
        unsafe { libc::tcsetattr(fd, libc::TCSANOW, &saved) };
    }
    let _ = writeln!(err);
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
