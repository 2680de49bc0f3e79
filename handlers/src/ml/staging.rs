//! Staging NGC assets: fetch through the allow-listed [`AssetFetcher`], check size and sha-256,
//! unpack zip or tar.gz archives without trusting their paths (no absolute paths, no `..`, no
//! links or devices, bounded entry count and unpacked size), then hand the folder to the
//! workspace datastore.

use crate::ports::{AssetFetcher, PortError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// Bounds on what staging accepts.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest download, bytes.
    pub max_download_bytes: u64,
    /// Largest total unpacked size, bytes.
    pub max_unpacked_bytes: u64,
    /// Most entries in one archive.
    pub max_entries: usize,
}

/// One staged asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    /// The URL it came from.
    pub url: String,
    /// sha-256 of the downloaded bytes.
    pub sha256: String,
    /// Downloaded bytes.
    pub bytes: u64,
    /// Files written.
    pub files: usize,
    /// `zip`, `tar.gz` or `file`.
    pub format: &'static str,
}

/// Why an asset could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// Never fixable by retrying: the reason says what to change.
    #[error("{0}")]
    Refused(String),
    /// Worth retrying (network, 5xx).
    #[error("{0}")]
    Transient(String),
}

impl From<PortError> for StageError {
    fn from(e: PortError) -> Self {
        if e.is_transient() {
            StageError::Transient(e.to_string())
        } else {
            StageError::Refused(e.to_string())
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// sha-256 of a file, hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// A relative path with only normal components, or why not.
fn safe_relative(raw: &Path) -> Result<PathBuf, String> {
    let text = raw.to_string_lossy();
    if raw.is_absolute() || text.starts_with('/') || text.starts_with('\\') || text.contains(':') {
        return Err(format!("entry {text:?} has an absolute path"));
    }
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err(format!("entry {text:?} climbs out with '..'")),
            _ => return Err(format!("entry {text:?} has an absolute path")),
        }
    }
    Ok(out)
}

struct Budget {
    limits: Limits,
    entries: usize,
    bytes: u64,
}

impl Budget {
    fn entry(&mut self) -> Result<(), String> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(format!(
                "the archive has more than {} entries",
                self.limits.max_entries
            ));
        }
        Ok(())
    }
    fn copy(&mut self, from: &mut dyn Read, to: &Path) -> Result<(), String> {
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let left = self.limits.max_unpacked_bytes.saturating_sub(self.bytes);
        let mut file =
            std::fs::File::create(to).map_err(|e| format!("cannot write {}: {e}", to.display()))?;
        let n = std::io::copy(&mut from.take(left + 1), &mut file)
            .map_err(|e| format!("the archive is corrupt or truncated: {e}"))?;
        self.bytes += n;
        if n > left {
            return Err(format!(
                "the archive unpacks to more than {} bytes (the unpacked-size cap)",
                self.limits.max_unpacked_bytes
            ));
        }
        Ok(())
    }
}

fn unzip(file: &Path, dest: &Path, budget: &mut Budget) -> Result<usize, String> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut archive =
        zip::ZipArchive::new(f).map_err(|e| format!("the zip archive is corrupt: {e}"))?;
    let mut files = 0;
    for i in 0..archive.len() {
        budget.entry()?;
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("the zip archive is corrupt: {e}"))?;
        let name = entry
            .name()
            .map_err(|e| format!("the zip archive is corrupt: {e}"))?
            .to_string();
        let rel = safe_relative(Path::new(&name))?;
        if entry.is_symlink() {
            return Err(format!(
                "entry {name:?} is a link; archives may hold only files and folders"
            ));
        }
        if entry.is_dir() {
            std::fs::create_dir_all(dest.join(&rel)).map_err(|e| e.to_string())?;
            continue;
        }
        budget.copy(&mut entry, &dest.join(&rel))?;
        files += 1;
    }
    Ok(files)
}

fn untar_gz(file: &Path, dest: &Path, budget: &mut Budget) -> Result<usize, String> {
    let f = std::fs::File::open(file).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let mut files = 0;
    let corrupt = |e: std::io::Error| format!("the tar.gz archive is corrupt or truncated: {e}");
    for entry in archive.entries().map_err(corrupt)? {
        budget.entry()?;
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path().map_err(corrupt)?.into_owned();
        let rel = safe_relative(&raw)?;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                std::fs::create_dir_all(dest.join(&rel)).map_err(|e| e.to_string())?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                budget.copy(&mut entry, &dest.join(&rel))?;
                files += 1;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                return Err(format!(
                    "entry {:?} is a link; archives may hold only files and folders",
                    raw.display()
                ))
            }
            other => {
                return Err(format!(
                    "entry {:?} is a {other:?}; archives may hold only files and folders",
                    raw.display()
                ))
            }
        }
    }
    Ok(files)
}

/// Unpacks `file` (zip, tar.gz, or a plain file kept under `name`) into `dest`.
pub fn unpack(
    file: &Path,
    name: &str,
    dest: &Path,
    limits: Limits,
) -> Result<(usize, &'static str), String> {
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|e| e.to_string())?;
    std::fs::create_dir_all(dest).map_err(|e| e.to_string())?;
    let mut budget = Budget {
        limits,
        entries: 0,
        bytes: 0,
    };
    if n >= 4 && magic == *b"PK\x03\x04" {
        Ok((unzip(file, dest, &mut budget)?, "zip"))
    } else if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        Ok((untar_gz(file, dest, &mut budget)?, "tar.gz"))
    } else {
        let rel = safe_relative(Path::new(name))?;
        let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
        budget.copy(&mut f, &dest.join(rel))?;
        Ok((1, "file"))
    }
}

/// The file name a URL ends in (sanitised), for a plain, non-archive asset.
fn file_name(url: &str) -> String {
    let last = url.rsplit('/').next().unwrap_or("asset");
    let clean: String = last
        .split(['?', '#'])
        .next()
        .unwrap_or("asset")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .collect();
    if clean.is_empty() || clean.starts_with('.') {
        "asset".into()
    } else {
        clean
    }
}

/// Fetches, checks and unpacks one asset into `dest` (`work` holds the download).
pub async fn stage(
    fetcher: &dyn AssetFetcher,
    asset: &super::commands::Asset,
    work: &Path,
    dest: &Path,
    limits: Limits,
) -> Result<Staged, StageError> {
    std::fs::create_dir_all(work).map_err(|e| StageError::Transient(e.to_string()))?;
    let download = work.join("download");
    let bytes = fetcher
        .fetch(&asset.url, &download, limits.max_download_bytes)
        .await?;
    let sha = sha256_file(&download).map_err(|e| StageError::Transient(e.to_string()))?;
    if let Some(expected) = &asset.sha256 {
        if !expected.eq_ignore_ascii_case(&sha) {
            return Err(StageError::Refused(format!(
                "{}: sha256 is {sha}, the command expects {expected}; fix the sha256 or the URL",
                socwire_common::text::redact_secrets(&asset.url)
            )));
        }
    }
    let name = file_name(&asset.url);
    let (d, dst) = (download.clone(), dest.to_path_buf());
    let (files, format) = tokio::task::spawn_blocking(move || unpack(&d, &name, &dst, limits))
        .await
        .map_err(|e| StageError::Transient(e.to_string()))?
        .map_err(|e| {
            StageError::Refused(format!(
                "{}: {e}",
                socwire_common::text::redact_secrets(&asset.url)
            ))
        })?;
    let _ = std::fs::remove_file(&download);
    Ok(Staged {
        url: asset.url.clone(),
        sha256: sha,
        bytes,
        files,
        format,
    })
}

/// The first `*.safetensors` under `dir` (sorted), relative to it.
pub fn find_safetensors(dir: &Path) -> Option<PathBuf> {
    let mut stack = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "safetensors") {
                found.push(p);
            }
        }
    }
    found.sort();
    found
        .first()
        .and_then(|p| p.strip_prefix(dir).ok())
        .map(Path::to_path_buf)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    pub(crate) const LIMITS: Limits = Limits {
        max_download_bytes: 1 << 20,
        max_unpacked_bytes: 1 << 20,
        max_entries: 100,
    };

    /// A tar.gz holding `entries` (path, contents), written without path checks.
    pub(crate) fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Write the name bytes directly so '..' and absolute names get in, as an attacker would.
            let name = h.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
        p
    }

    #[test]
    fn tar_gz_and_zip_unpack_inside_the_destination() {
        let dir = tempfile::tempdir().unwrap();
        let t = write(
            dir.path(),
            "a.tgz",
            &tar_gz(&[("model/base.safetensors", b"abc")]),
        );
        let (files, format) = unpack(&t, "a.tgz", &dir.path().join("t"), LIMITS).unwrap();
        assert_eq!((files, format), (1, "tar.gz"));
        assert_eq!(
            std::fs::read(dir.path().join("t/model/base.safetensors")).unwrap(),
            b"abc"
        );
        assert_eq!(
            find_safetensors(&dir.path().join("t")).unwrap(),
            Path::new("model/base.safetensors")
        );

        let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        z.start_file("m/w.bin", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b"xyz").unwrap();
        let bytes = z.finish().unwrap().into_inner();
        let zf = write(dir.path(), "a.zip", &bytes);
        assert_eq!(
            unpack(&zf, "a.zip", &dir.path().join("z"), LIMITS).unwrap(),
            (1, "zip")
        );
        assert_eq!(std::fs::read(dir.path().join("z/m/w.bin")).unwrap(), b"xyz");
    }

    #[test]
    fn path_escapes_links_bombs_and_corruption_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let dotdot = write(dir.path(), "1.tgz", &tar_gz(&[("../evil", b"x")]));
        assert!(unpack(&dotdot, "x", &out, LIMITS)
            .unwrap_err()
            .contains("'..'"));
        assert!(!dir.path().join("evil").exists());
        let abs = write(dir.path(), "2.tgz", &tar_gz(&[("/tmp/evil", b"x")]));
        assert!(unpack(&abs, "x", &out, LIMITS)
            .unwrap_err()
            .contains("absolute"));

        let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", "/etc/passwd").unwrap();
        let link = write(
            dir.path(),
            "3.tgz",
            &b.into_inner().unwrap().finish().unwrap(),
        );
        assert!(unpack(&link, "x", &out, LIMITS)
            .unwrap_err()
            .contains("link"));

        let big = vec![0u8; 2 << 20];
        let bomb = write(dir.path(), "4.tgz", &tar_gz(&[("big", &big)]));
        assert!(unpack(&bomb, "x", &out, LIMITS)
            .unwrap_err()
            .contains("unpacked-size cap"));

        let good = tar_gz(&[("f", &[7u8; 4096])]);
        let cut = write(dir.path(), "5.tgz", &good[..good.len() / 2]);
        assert!(unpack(&cut, "x", &out, LIMITS)
            .unwrap_err()
            .contains("corrupt"));
        let badzip = write(dir.path(), "6.zip", b"PK\x03\x04garbage");
        assert!(unpack(&badzip, "x", &out, LIMITS)
            .unwrap_err()
            .contains("corrupt"));
    }
}
