//! Files that hold state or secrets are private to the user who runs socwire: a data
//! directory this process creates is 0700, and state files are created 0600 (SQLite gives its
//! `-wal` and `-shm` files the mode of the database file).

use std::io;
use std::path::Path;

/// Creates `dir` (and its parents) if missing; a directory created here is mode 0700. An
/// existing directory is left as it is (it may be the user's own, such as `.`).
pub fn private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

/// Creates `path` empty with mode 0600 if it does not exist, so a database or key opened there
/// afterwards is never readable by others; an existing file is left alone.
pub fn private_file(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        private_dir(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => Err(e),
        _ => Ok(()),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_directories_and_files_are_private_and_existing_ones_are_kept() {
        let root = tempfile_dir();
        let dir = root.join("state");
        let file = dir.join("db.sqlite3");
        private_file(&file).unwrap();
        assert_eq!((mode(&dir), mode(&file)), (0o700, 0o600));
        std::fs::write(&file, b"data").unwrap();
        private_file(&file).unwrap();
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"data",
            "existing file untouched"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("socwire-common-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}
