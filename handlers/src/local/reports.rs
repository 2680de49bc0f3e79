use crate::ports::{PortError, PortResult, ReportStore};
use async_trait::async_trait;
use std::path::PathBuf;

/// Writes reports as files under a directory; the local host serves them over HTTP.
pub struct FileReportStore {
    dir: PathBuf,
    base_url: String,
}

impl FileReportStore {
    /// Reports go to `dir`; links are `{base_url}/{name}`.
    pub fn new(dir: PathBuf, base_url: impl Into<String>) -> Self {
        Self {
            dir,
            base_url: base_url.into().trim_end_matches('/').to_string(),
        }
    }
}

/// True when `name` is a safe relative report name: path segments of `[A-Za-z0-9._-]`, no `..`.
pub(crate) fn is_safe_report_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        })
}

#[async_trait]
impl ReportStore for FileReportStore {
    async fn put_html(&self, name: &str, html: &str) -> PortResult<String> {
        if !is_safe_report_name(name) {
            return Err(PortError::Permanent(format!("unsafe report name {name:?}")));
        }
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| PortError::file(format!("create {}", parent.display()), e))?;
        }
        // Write then rename, so a reader never sees half a report.
        let tmp = path.with_extension("html.tmp");
        tokio::fs::write(&tmp, html)
            .await
            .map_err(|e| PortError::file(format!("write {}", tmp.display()), e))?;
        tokio::fs::rename(&tmp, &path)
            .await
            .map_err(|e| PortError::file(format!("rename {}", path.display()), e))?;
        Ok(format!("{}/{name}", self.base_url))
    }
}

#[cfg(test)]
mod tests {
    use super::is_safe_report_name;

    #[test]
    fn report_names_cannot_escape_the_directory() {
        assert!(is_safe_report_name("triage/abc-1.html"));
        assert!(!is_safe_report_name("../etc/passwd"));
        assert!(!is_safe_report_name("/abs.html"));
        assert!(!is_safe_report_name("a/<b>.html"));
    }
}
