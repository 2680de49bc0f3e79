//! `socwire package`: the zip the Functions host runs from (run-from-package / zip deploy).
//!
//! The layout is the Functions app root: the handler binary (unix mode 0755, the name host.json's
//! `customHandler.description.defaultExecutablePath` gives), `host.json`, and one folder per
//! function holding its `function.json`. Files are picked by name, never by walking the
//! repository, so `target/`, `.socwire/` and `local.settings.json` cannot slip in; every picked
//! file is still checked, and anything that looks like a secret stops the build of the zip.
//!
//! The binary must run on every Functions v4 Linux image: they are built on Debian 11
//! "bullseye" (glibc 2.31) as well as Debian 12 (Azure/azure-functions-docker, `host/4/bullseye`
//! and `host/4/bookworm`). A static (musl) binary always does; a glibc-linked one must need no
//! `GLIBC_` symbol version newer than 2.31, read from the ELF's version-needed section
//! (`.gnu.version_r`). `infra/build-package.sh` builds such a binary with cargo-zigbuild
//! (target `x86_64-unknown-linux-gnu.2.31`).

use object::read::elf::{ElfFile64, FileHeader as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// glibc of the oldest Functions v4 Linux image (Debian 11 "bullseye" base): the newest
/// `GLIBC_x.y` a glibc-linked handler may require.
pub const IMAGE_GLIBC: &str = "2.31";

/// One file in the package.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path inside the zip (`/`-separated).
    pub name: String,
    /// Contents.
    pub data: Vec<u8>,
    /// Gets the run bit (the handler binary).
    pub executable: bool,
}

/// How the handler binary is linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linkage {
    /// No versioned glibc symbols (static, e.g. musl).
    Static,
    /// Linked against glibc; the newest `GLIBC_` version it needs.
    Glibc(Version),
}

/// A dotted version (`2.34`), compared numerically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub Vec<u32>);

impl Version {
    /// Parses `2.36` or `GLIBC_2.36`.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix("GLIBC_").unwrap_or(text);
        let parts: Option<Vec<u32>> = text.split('.').map(|p| p.parse().ok()).collect();
        parts.filter(|p| !p.is_empty()).map(Version)
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        write!(f, "{}", parts.join("."))
    }
}

/// Reads how an x86-64 ELF binary is linked: the newest `GLIBC_` version in its
/// version-needed section, or [`Linkage::Static`] when it needs none.
pub fn linkage(elf: &[u8]) -> anyhow::Result<Linkage> {
    let file = ElfFile64::<object::Endianness>::parse(elf)
        .map_err(|e| anyhow::anyhow!("not a 64-bit ELF executable: {e}"))?;
    let endian = file.endian();
    let machine = file.elf_header().e_machine(endian);
    anyhow::ensure!(
        machine == object::elf::EM_X86_64,
        "the binary is for ELF machine {machine}, not x86-64 (EM_X86_64 = {}): the Functions Linux image is amd64",
        object::elf::EM_X86_64
    );
    let sections = file.elf_section_table();
    let Some((mut needs, strings_index)) = sections
        .gnu_verneed(endian, elf)
        .map_err(|e| anyhow::anyhow!("reading .gnu.version_r: {e}"))?
    else {
        return Ok(Linkage::Static);
    };
    let strings = sections
        .strings(endian, elf, strings_index)
        .map_err(|e| anyhow::anyhow!("reading the version string table: {e}"))?;
    let mut newest: Option<Version> = None;
    while let Some((_need, mut aux)) = needs
        .next()
        .map_err(|e| anyhow::anyhow!("reading .gnu.version_r: {e}"))?
    {
        while let Some(a) = aux
            .next()
            .map_err(|e| anyhow::anyhow!("reading .gnu.version_r: {e}"))?
        {
            let name = a
                .name(endian, strings)
                .map_err(|e| anyhow::anyhow!("reading a version name: {e}"))?;
            let name = String::from_utf8_lossy(name);
            if name.starts_with("GLIBC_") {
                if let Some(v) = Version::parse(&name) {
                    newest = newest.max(Some(v));
                }
            }
        }
    }
    Ok(newest.map_or(Linkage::Static, Linkage::Glibc))
}

/// Checks the binary against the image's glibc; returns a line saying what it needs.
pub fn check_binary(elf: &[u8], max_glibc: &str) -> anyhow::Result<String> {
    let limit = Version::parse(max_glibc)
        .ok_or_else(|| anyhow::anyhow!("--max-glibc {max_glibc:?} is not a version like 2.36"))?;
    match linkage(elf)? {
        Linkage::Static => Ok("binary: static (needs no glibc symbol version)".into()),
        Linkage::Glibc(v) if v <= limit => Ok(format!(
            "binary: needs GLIBC_{v} at most (image has {limit})"
        )),
        Linkage::Glibc(v) => anyhow::bail!(
            "the binary needs GLIBC_{v}, newer than the Functions image's {limit}: build it with \
             `infra/build-package.sh` (cargo-zigbuild, target x86_64-unknown-linux-gnu.{limit}), \
             or on a machine whose glibc is {limit} or older"
        ),
    }
}

/// File names that never go into a package.
const REFUSED_NAMES: &[&str] = &[
    "local.settings.json",
    ".socwire",
    ".env",
    "function-key",
    ".azurite",
    "__azurite_db_blob__.json",
];
/// Extensions of key and certificate files.
const REFUSED_EXTENSIONS: &[&str] = &["pem", "pfx", "p12", "key", "crt", "cer", "publishsettings"];
/// Text that only a credential contains (matched case-insensitively).
const SECRET_MARKERS: &[&str] = &[
    "accountkey=",
    "sharedaccesskey=",
    "sharedaccesssignature",
    "-----begin",
    "client_secret",
    "clientsecret",
    "password",
    "&sig=",
    "?sig=",
];

/// Refuses a file whose name or (text) contents look like a secret; names the file and why.
pub fn refuse_secrets(name: &str, data: &[u8]) -> anyhow::Result<()> {
    for part in name.split('/') {
        let lower = part.to_ascii_lowercase();
        if REFUSED_NAMES.contains(&lower.as_str()) || lower.starts_with("id_rsa") {
            anyhow::bail!("refusing {name}: {part} never goes into a package");
        }
        if let Some((_, ext)) = lower.rsplit_once('.') {
            if REFUSED_EXTENSIONS.contains(&ext) {
                anyhow::bail!("refusing {name}: .{ext} files hold keys or certificates");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let lower = text.to_ascii_lowercase();
        if let Some(marker) = SECRET_MARKERS.iter().find(|m| lower.contains(*m)) {
            anyhow::bail!(
                "refusing {name}: it contains {marker:?}, which only a credential has; keep \
                 secrets in app settings (Key Vault references), never in the package"
            );
        }
    }
    Ok(())
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// Collects the package's files from the app root and the binary, checking each.
pub fn collect(app_root: &Path, binary: &[u8]) -> anyhow::Result<Vec<Entry>> {
    let host_path = app_root.join("host.json");
    let host = read(&host_path)?;
    let host_json: serde_json::Value = serde_json::from_slice(&host)
        .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", host_path.display()))?;
    let exe = host_json
        .pointer("/customHandler/description/defaultExecutablePath")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            anyhow::anyhow!("host.json has no customHandler.description.defaultExecutablePath")
        })?
        .to_string();
    anyhow::ensure!(
        !exe.contains('/') && !exe.contains('\\') && !exe.is_empty(),
        "host.json defaultExecutablePath {exe:?} must be a file name at the app root"
    );
    let mut entries = vec![
        Entry {
            name: exe,
            data: binary.to_vec(),
            executable: true,
        },
        Entry {
            name: "host.json".into(),
            data: host,
            executable: false,
        },
    ];
    let defs = app_root.join("function-defs");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&defs)
        .map_err(|e| anyhow::anyhow!("{}: {e}", defs.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let function = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 name", dir.display()))?
            .to_string();
        anyhow::ensure!(
            dir.join("function.json").is_file(),
            "{}: no function.json",
            dir.display()
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for file in files {
            let meta = std::fs::symlink_metadata(&file)?;
            let file_name = file
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let name = format!("{function}/{file_name}");
            anyhow::ensure!(
                meta.is_file(),
                "refusing {name}: only plain files go into a function folder"
            );
            let data = read(&file)?;
            if file_name == "function.json" {
                serde_json::from_slice::<serde_json::Value>(&data)
                    .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", file.display()))?;
            }
            entries.push(Entry {
                name,
                data,
                executable: false,
            });
        }
    }
    anyhow::ensure!(entries.len() > 2, "{}: no function folders", defs.display());
    for e in entries.iter().filter(|e| !e.executable) {
        refuse_secrets(&e.name, &e.data)?;
    }
    Ok(entries)
}

/// Writes the entries as a zip: deflated (fast level), fixed timestamps (the same inputs give the same
/// bytes), unix modes 0755 for the binary and 0644 for the rest.
pub fn write_zip(entries: &[Entry], output: &Path) -> anyhow::Result<()> {
    let tmp = output.with_extension("zip.partial");
    let file =
        std::fs::File::create(&tmp).map_err(|e| anyhow::anyhow!("{}: {e}", tmp.display()))?;
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
    for e in entries {
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            // Level 1: several times faster than the default on a 10-150 MB binary, for a
            // zip a few percent larger.
            .compression_level(Some(1))
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(if e.executable { 0o755 } else { 0o644 });
        zip.start_file(e.name.as_str(), options)?;
        zip.write_all(&e.data)?;
    }
    zip.finish()?.flush()?;
    std::fs::rename(&tmp, output)
        .map_err(|e| anyhow::anyhow!("{} → {}: {e}", tmp.display(), output.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(Version::parse("GLIBC_2.9").unwrap() < Version::parse("2.36").unwrap());
        assert!(Version::parse("GLIBC_2.38").unwrap() > Version::parse("2.36").unwrap());
        assert_eq!(Version::parse("GLIBC_PRIVATE"), None);
    }

    #[test]
    fn this_test_binary_is_read_and_held_to_the_limit() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        match linkage(&me).unwrap() {
            Linkage::Static => assert!(check_binary(&me, "2.0").is_ok()),
            Linkage::Glibc(v) => {
                assert!(v >= Version::parse("2.2.5").unwrap(), "{v}");
                assert!(check_binary(&me, &v.to_string()).is_ok());
                let older = Version(vec![v.0[0], v.0[1].saturating_sub(1)]);
                let e = check_binary(&me, &older.to_string()).unwrap_err();
                assert!(e.to_string().contains(&format!("GLIBC_{v}")), "{e}");
            }
        }
        assert!(linkage(b"#!/bin/sh\necho not elf\n").is_err());
    }

    /// A minimal x86-64 ELF whose `.gnu.version_r` needs `versions` from libc.so.6 (no
    /// version section at all when empty): what a glibc-linked binary carries, in 400 bytes.
    fn elf_needing(versions: &[&str]) -> Vec<u8> {
        let mut dynstr = b"\0libc.so.6\0".to_vec();
        let names: Vec<u32> = versions
            .iter()
            .map(|v| {
                let at = dynstr.len() as u32;
                dynstr.extend_from_slice(v.as_bytes());
                dynstr.push(0);
                at
            })
            .collect();
        let mut verneed = Vec::new();
        if !versions.is_empty() {
            for x in [1u16, versions.len() as u16] {
                verneed.extend_from_slice(&x.to_le_bytes());
            }
            for x in [1u32, 16, 0] {
                verneed.extend_from_slice(&x.to_le_bytes());
            }
            for (k, name) in names.iter().enumerate() {
                let next = if k + 1 < names.len() { 16u32 } else { 0 };
                verneed.extend_from_slice(&0u32.to_le_bytes()); // vna_hash (not checked)
                verneed.extend_from_slice(&0u16.to_le_bytes()); // vna_flags
                verneed.extend_from_slice(&(k as u16 + 2).to_le_bytes()); // vna_other
                verneed.extend_from_slice(&name.to_le_bytes());
                verneed.extend_from_slice(&next.to_le_bytes());
            }
        }
        let shstrtab = b"\0.dynstr\0.gnu.version_r\0.shstrtab\0";
        let pad8 = |v: &mut Vec<u8>| v.resize(v.len().div_ceil(8) * 8, 0);
        let mut body = vec![0u8; 64];
        let dynstr_at = body.len();
        body.extend_from_slice(&dynstr);
        pad8(&mut body);
        let verneed_at = body.len();
        body.extend_from_slice(&verneed);
        pad8(&mut body);
        let shstrtab_at = body.len();
        body.extend_from_slice(shstrtab);
        pad8(&mut body);
        let shoff = body.len();
        let with_verneed = !versions.is_empty();
        let mut sections: Vec<(u32, u32, usize, usize, u32, u32)> = vec![(0, 0, 0, 0, 0, 0)];
        sections.push((1, 3, dynstr_at, dynstr.len(), 0, 0));
        if with_verneed {
            sections.push((9, 0x6fff_fffe, verneed_at, verneed.len(), 1, 1));
        }
        sections.push((24, 3, shstrtab_at, shstrtab.len(), 0, 0));
        for (name, kind, offset, size, link, info) in &sections {
            body.extend_from_slice(&name.to_le_bytes());
            body.extend_from_slice(&kind.to_le_bytes());
            body.extend_from_slice(&0u64.to_le_bytes()); // flags
            body.extend_from_slice(&0u64.to_le_bytes()); // addr
            body.extend_from_slice(&(*offset as u64).to_le_bytes());
            body.extend_from_slice(&(*size as u64).to_le_bytes());
            body.extend_from_slice(&link.to_le_bytes());
            body.extend_from_slice(&info.to_le_bytes());
            body.extend_from_slice(&1u64.to_le_bytes()); // addralign
            body.extend_from_slice(&0u64.to_le_bytes()); // entsize
        }
        let mut h = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        h.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        h.extend_from_slice(&object::elf::EM_X86_64.to_le_bytes());
        h.extend_from_slice(&1u32.to_le_bytes());
        h.extend_from_slice(&0u64.to_le_bytes()); // entry
        h.extend_from_slice(&0u64.to_le_bytes()); // phoff
        h.extend_from_slice(&(shoff as u64).to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // flags
        for x in [
            64u16,
            56,
            0,
            64,
            sections.len() as u16,
            sections.len() as u16 - 1,
        ] {
            h.extend_from_slice(&x.to_le_bytes());
        }
        body[..64].copy_from_slice(&h);
        body
    }

    #[test]
    fn the_default_limit_is_the_oldest_functions_image_glibc() {
        // Debian 11 based Functions images have glibc 2.31: GLIBC_2.32 and later are refused.
        let ok = elf_needing(&["GLIBC_2.2.5", "GLIBC_2.31"]);
        assert_eq!(
            linkage(&ok).unwrap(),
            Linkage::Glibc(Version::parse("2.31").unwrap())
        );
        assert!(check_binary(&ok, IMAGE_GLIBC).is_ok());
        for newer in ["GLIBC_2.32", "GLIBC_2.34", "GLIBC_2.36"] {
            let e = check_binary(&elf_needing(&["GLIBC_2.2.5", newer]), IMAGE_GLIBC)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&format!(
                    "needs {newer}, newer than the Functions image's 2.31"
                )),
                "{e}"
            );
        }
        let fixed = elf_needing(&[]);
        assert_eq!(linkage(&fixed).unwrap(), Linkage::Static);
        assert!(check_binary(&fixed, IMAGE_GLIBC).is_ok());
    }

    #[test]
    fn secrets_are_refused_by_name_and_content() {
        assert!(refuse_secrets("host.json", br#"{"version":"2.0"}"#).is_ok());
        for (name, data) in [
            ("local.settings.json", &b"{}"[..]),
            ("f/.socwire/x", b"{}"),
            ("f/cert.pem", b""),
            (
                "f/function.json",
                b"DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==",
            ),
            (
                "f/notes.txt",
                b"https://a.blob.core.windows.net/c?sv=1&sig=abc",
            ),
        ] {
            let e = refuse_secrets(name, data).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
