//! The users file: one line per user, `NAME:SCRAM-SHA-256:ITERATIONS:SALT:STORED-KEY:SERVER-KEY`
//! (salt and keys base64), `#` comments and blank lines ignored. It holds
//! salted SCRAM-SHA-256 keys, never a password: the same entry checks a
//! PLAIN password (derive and compare) and a SCRAM proof.
//!
//! `botectl user add --file F NAME` writes entries ([`set_user`]); `boted`
//! reads the file named by `[router] users-file` at start and on SIGHUP
//! ([`UserStore::load`]). Errors name the file and the line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::scram::Credential;

/// The only credential scheme of a users file line today.
pub const SCHEME: &str = "SCRAM-SHA-256";

/// The users file could not be read, parsed or written.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write users file {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error(
        "user name \"{0}\" is not allowed (not empty; no ':', whitespace or control characters)"
    )]
    BadName(String),
}

/// The users of one router, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserStore {
    users: HashMap<String, Credential>,
}

/// A user name the file can hold.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
}

impl UserStore {
    /// Reads and parses the users file at `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<UserStore, UsersError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_owned(),
            source,
        })?;
        UserStore::parse(&text, &path.display().to_string())
    }

    /// Parses users file text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<UserStore, UsersError> {
        let mut users = HashMap::new();
        let mut first_line = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let invalid = |message: String| UsersError::Invalid {
                file: file.to_owned(),
                line,
                message,
            };
            let entry = raw.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            let (name, scheme, rest) = split_entry(entry).ok_or_else(|| {
                invalid(format!(
                    "expected NAME:{SCHEME}:ITERATIONS:SALT:STORED-KEY:SERVER-KEY"
                ))
            })?;
            if !valid_name(name) {
                return Err(invalid(format!("user name \"{name}\" is not allowed")));
            }
            if scheme != SCHEME {
                return Err(invalid(format!(
                    "user \"{name}\": unknown scheme \"{scheme}\" (expected {SCHEME})"
                )));
            }
            let credential =
                Credential::decode(rest).map_err(|e| invalid(format!("user \"{name}\": {e}")))?;
            if let Some(first) = first_line.insert(name.to_owned(), line) {
                return Err(invalid(format!(
                    "user \"{name}\" is already defined on line {first}"
                )));
            }
            users.insert(name.to_owned(), credential);
        }
        Ok(UserStore { users })
    }

    /// The credential of `name`.
    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.users.get(name)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The users in force in a running router, shared by whoever checks
/// credentials (client listeners, inter-router listeners); a reload swaps
/// in a new store whole, and checks already under way keep the one they
/// took.
#[derive(Debug, Default)]
pub struct SharedUsers(std::sync::RwLock<std::sync::Arc<UserStore>>);

impl SharedUsers {
    pub fn new(users: UserStore) -> SharedUsers {
        SharedUsers(std::sync::RwLock::new(std::sync::Arc::new(users)))
    }

    /// The store in force.
    pub fn get(&self) -> std::sync::Arc<UserStore> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `users` in force.
    pub fn replace(&self, users: UserStore) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = std::sync::Arc::new(users);
    }
}

fn split_entry(entry: &str) -> Option<(&str, &str, &str)> {
    let (name, rest) = entry.split_once(':')?;
    let (scheme, rest) = rest.split_once(':')?;
    Some((name, scheme, rest))
}

/// One line of the file for `name`.
pub fn entry_line(name: &str, credential: &Credential) -> String {
    format!("{name}:{SCHEME}:{}", credential.encode())
}

/// Adds `name` to the users file at `path` with `credential`, or replaces
/// its entry; other lines stay as they were. A missing file is created
/// (mode 0600). Returns true when an entry was replaced. The file is
/// written whole to a temporary file beside it and renamed over it.
pub fn set_user(path: &Path, name: &str, credential: &Credential) -> Result<bool, UsersError> {
    if !valid_name(name) {
        return Err(UsersError::BadName(name.to_owned()));
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "# Bote users file: NAME:SCRAM-SHA-256:ITERATIONS:SALT:STORED-KEY:SERVER-KEY\n\
             # (salted keys, never passwords). Add users with `botectl user add`.\n"
                .to_owned()
        }
        Err(source) => {
            return Err(UsersError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    // Refuse to rewrite a file that does not parse: its lines would be kept
    // as they are and stay broken.
    UserStore::parse(&text, &path.display().to_string())?;
    let new_line = entry_line(name, credential);
    let mut replaced = false;
    let mut out = String::with_capacity(text.len() + new_line.len() + 1);
    for line in text.lines() {
        let is_entry = split_entry(line.trim()).is_some_and(|(n, _, _)| n == name)
            && !line.trim().starts_with('#');
        if is_entry {
            out.push_str(&new_line);
            replaced = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !replaced {
        out.push_str(&new_line);
        out.push('\n');
    }
    let write = |source| UsersError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp-botectl");
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(write)?;
        f.write_all(out.as_bytes()).map_err(write)?;
        f.sync_all().map_err(write)?;
    }
    std::fs::rename(&tmp, path).map_err(write)?;
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scram::MIN_ITERATIONS;

    #[test]
    fn set_user_creates_replaces_and_keeps_other_lines() {
        let dir = std::env::temp_dir().join(format!("bote-users-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users");
        let _ = std::fs::remove_file(&path);
        let alice = Credential::new("one", MIN_ITERATIONS);
        assert!(!set_user(&path, "alice", &alice).unwrap());
        assert!(!set_user(&path, "bob", &Credential::new("two", MIN_ITERATIONS)).unwrap());
        let alice2 = Credential::new("three", MIN_ITERATIONS);
        assert!(set_user(&path, "alice", &alice2).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# Bote users file"));
        assert!(!text.contains("three") && !text.contains("one:"));
        let store = UserStore::load(&path).unwrap();
        assert_eq!(store.len(), 2);
        assert!(store.get("alice").unwrap().verify_password("three"));
        assert!(store.get("bob").unwrap().verify_password("two"));
        assert!(matches!(
            set_user(&path, "a b", &alice),
            Err(UsersError::BadName(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let good = entry_line("alice", &Credential::new("pw", MIN_ITERATIONS));
        for (text, line, says) in [
            ("# c\n\nalice\n".to_owned(), 3, "expected NAME"),
            (format!("{good}\n{good}\n"), 2, "already defined on line 1"),
            (
                format!("\n{}\n", good.replace("SCRAM-SHA-256", "MD5")),
                2,
                "unknown scheme",
            ),
            (
                "x:SCRAM-SHA-256:12:AA==:AA==:AA==\n".to_owned(),
                1,
                "out of range",
            ),
        ] {
            let e = UserStore::parse(&text, "users.txt")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("users.txt:{line}: ")), "{e}");
            assert!(e.contains(says), "{e}");
        }
    }
}
