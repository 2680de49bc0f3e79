//! A storage account from `SOCWIRE_STORAGE`: endpoints plus how to authorise requests.

use azure_core::credentials::TokenCredential;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use socwire_common::text::redact_secrets;
use std::fmt;
use std::sync::Arc;
use url::Url;

/// Azurite's account. Its key is the public, documented development key that
/// `UseDevelopmentStorage=true` stands for; it opens nothing but a local emulator.
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// SAS service version used for signing (supported by Azure and Azurite).
const SAS_VERSION: &str = "2019-12-12";

/// How requests to the account are authorised.
#[derive(Clone)]
pub enum StorageAuth {
    /// Entra ID bearer tokens (managed identity).
    Token(Arc<dyn TokenCredential>),
    /// An account key, used to sign short-lived account SAS tokens.
    Key(Vec<u8>),
}

/// A storage account: blob and queue endpoints and credentials.
#[derive(Clone)]
pub struct StorageAccount {
    /// Account name.
    pub name: String,
    /// Blob service endpoint, ending in `/`.
    pub blob_endpoint: Url,
    /// Queue service endpoint, ending in `/`.
    pub queue_endpoint: Url,
    /// Authorisation.
    pub auth: StorageAuth,
}

impl fmt::Debug for StorageAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auth = match self.auth {
            StorageAuth::Token(_) => "token",
            StorageAuth::Key(_) => "account key",
        };
        f.debug_struct("StorageAccount")
            .field("name", &self.name)
            .field("blob_endpoint", &self.blob_endpoint.as_str())
            .field("queue_endpoint", &self.queue_endpoint.as_str())
            .field("auth", &auth)
            .finish()
    }
}

/// Checks a blob container or queue name: 3-63 lower-case letters, digits and single hyphens,
/// not starting or ending with a hyphen (the rule both services share).
pub(crate) fn check_name(name: &str, kind: &str) -> anyhow::Result<()> {
    let valid = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !valid {
        anyhow::bail!(
            "{name:?} is not a valid {kind} name (3-63 lower-case letters, digits, single hyphens)"
        );
    }
    Ok(())
}

fn endpoint(text: &str) -> anyhow::Result<Url> {
    // Error messages quote the setting without any SAS it carries: they end up in logs.
    let shown = redact_secrets(text);
    let with_slash = if text.ends_with('/') {
        text.to_string()
    } else {
        format!("{text}/")
    };
    let url =
        Url::parse(&with_slash).map_err(|e| anyhow::anyhow!("storage endpoint {shown:?}: {e}"))?;
    if url.query().is_some() {
        anyhow::bail!("storage endpoint {shown:?} must not carry a query (SAS tokens are not read from settings)");
    }
    Ok(url)
}

impl StorageAccount {
    /// Parses `SOCWIRE_STORAGE`: `UseDevelopmentStorage=true`, a connection string
    /// (`AccountName=…;AccountKey=…;EndpointSuffix=…` or explicit `BlobEndpoint`/`QueueEndpoint`),
    /// or a blob account URL `https://acct.blob.core.windows.net`, which uses managed identity.
    /// A connection string without `AccountKey` also uses managed identity.
    pub fn parse(setting: &str) -> anyhow::Result<Self> {
        let setting = setting.trim();
        if setting.starts_with("https://") || setting.starts_with("http://") {
            let blob = endpoint(setting)?;
            let host = blob.host_str().unwrap_or_default().to_string();
            let name = host.split('.').next().unwrap_or_default().to_string();
            if !host.contains(".blob.") {
                let shown = redact_secrets(setting);
                anyhow::bail!("SOCWIRE_STORAGE URL {shown:?} is not a blob endpoint (https://<account>.blob.<suffix>)");
            }
            let queue = endpoint(&setting.replacen(".blob.", ".queue.", 1))?;
            return Ok(Self {
                name,
                blob_endpoint: blob,
                queue_endpoint: queue,
                auth: StorageAuth::Token(super::default_credential()?),
            });
        }
        let mut pairs = std::collections::HashMap::new();
        for part in setting.split(';').filter(|p| !p.trim().is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("SOCWIRE_STORAGE: {part:?} is not key=value"))?;
            pairs.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
        if pairs
            .get("usedevelopmentstorage")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            let proxy = pairs
                .get("developmentstorageproxyuri")
                .cloned()
                .unwrap_or_else(|| "http://127.0.0.1".into());
            let proxy = proxy.trim_end_matches('/');
            return Ok(Self {
                name: DEV_ACCOUNT.into(),
                blob_endpoint: endpoint(&format!("{proxy}:10000/{DEV_ACCOUNT}"))?,
                queue_endpoint: endpoint(&format!("{proxy}:10001/{DEV_ACCOUNT}"))?,
                auth: StorageAuth::Key(base64::engine::general_purpose::STANDARD.decode(DEV_KEY)?),
            });
        }
        let name = pairs
            .get("accountname")
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("SOCWIRE_STORAGE lacks AccountName"))?;
        let protocol = pairs
            .get("defaultendpointsprotocol")
            .cloned()
            .unwrap_or_else(|| "https".into());
        let suffix = pairs
            .get("endpointsuffix")
            .cloned()
            .unwrap_or_else(|| "core.windows.net".into());
        let blob = match pairs.get("blobendpoint") {
            Some(e) => endpoint(e)?,
            None => endpoint(&format!("{protocol}://{name}.blob.{suffix}"))?,
        };
        let queue = match pairs.get("queueendpoint") {
            Some(e) => endpoint(e)?,
            None => endpoint(&format!("{protocol}://{name}.queue.{suffix}"))?,
        };
        let auth = match pairs.get("accountkey") {
            Some(key) => StorageAuth::Key(
                base64::engine::general_purpose::STANDARD
                    .decode(key)
                    .map_err(|_| anyhow::anyhow!("SOCWIRE_STORAGE AccountKey is not base64"))?,
            ),
            None => StorageAuth::Token(super::default_credential()?),
        };
        Ok(Self {
            name,
            blob_endpoint: blob,
            queue_endpoint: queue,
            auth,
        })
    }

    /// True for the storage emulator: the development account, or endpoints on a loopback address.
    pub fn is_emulator(&self) -> bool {
        let loopback = |u: &Url| match u.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        self.name == DEV_ACCOUNT
            || (loopback(&self.blob_endpoint) && loopback(&self.queue_endpoint))
    }

    /// An account SAS (blob and queue services; service, container and object resources)
    /// valid from a minute ago for `valid_for`, or None when the account uses tokens.
    pub fn account_sas(&self, valid_for: chrono::Duration) -> Option<String> {
        let StorageAuth::Key(key) = &self.auth else {
            return None;
        };
        let now = chrono::Utc::now();
        let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let (start, expiry) = (
            fmt(now - chrono::Duration::minutes(1)),
            fmt(now + valid_for),
        );
        // A SAS that allows plain HTTP would travel in clear text to a real account: only the
        // emulator, which listens on HTTP, gets `https,http`.
        let protocol = if self.is_emulator() {
            "https,http"
        } else {
            "https"
        };
        let (permissions, services, resource_types) = ("racwdlup", "bq", "sco");
        let to_sign = format!("{}\n{permissions}\n{services}\n{resource_types}\n{start}\n{expiry}\n\n{protocol}\n{SAS_VERSION}\n", self.name);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(to_sign.as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let query = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("sv", SAS_VERSION)
            .append_pair("ss", services)
            .append_pair("srt", resource_types)
            .append_pair("sp", permissions)
            .append_pair("st", &start)
            .append_pair("se", &expiry)
            .append_pair("spr", protocol)
            .append_pair("sig", &signature)
            .finish();
        Some(query)
    }

    /// Authorises a request: appends a fresh SAS, or adds a bearer token.
    pub(crate) async fn authorise(
        &self,
        mut url: Url,
        request: impl FnOnce(Url) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, crate::ports::PortError> {
        match &self.auth {
            StorageAuth::Key(_) => {
                let sas = self
                    .account_sas(chrono::Duration::hours(1))
                    .unwrap_or_default();
                let query = match url.query() {
                    Some(q) if !q.is_empty() => format!("{q}&{sas}"),
                    _ => sas,
                };
                url.set_query(Some(&query));
                Ok(request(url))
            }
            StorageAuth::Token(credential) => {
                let token =
                    super::bearer(credential.as_ref(), "https://storage.azure.com/.default")
                        .await?;
                Ok(request(url).header("authorization", token))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn development_storage_points_at_azurite() {
        let a = StorageAccount::parse("UseDevelopmentStorage=true").unwrap();
        assert_eq!(
            a.blob_endpoint.as_str(),
            "http://127.0.0.1:10000/devstoreaccount1/"
        );
        assert_eq!(
            a.queue_endpoint.as_str(),
            "http://127.0.0.1:10001/devstoreaccount1/"
        );
        assert!(matches!(a.auth, StorageAuth::Key(_)));
    }

    #[test]
    fn connection_strings_build_endpoints_from_name_and_suffix() {
        let key = base64::engine::general_purpose::STANDARD.encode(b"k");
        let a = StorageAccount::parse(&format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=core.usgovcloudapi.net")).unwrap();
        assert_eq!(
            a.blob_endpoint.as_str(),
            "https://acct.blob.core.usgovcloudapi.net/"
        );
        assert_eq!(
            a.queue_endpoint.as_str(),
            "https://acct.queue.core.usgovcloudapi.net/"
        );
        assert!(
            StorageAccount::parse("AccountKey=abc").is_err(),
            "no account name"
        );
        assert!(StorageAccount::parse("nonsense").is_err());
    }

    #[test]
    fn account_sas_has_the_documented_fields_and_never_the_key() {
        let a = StorageAccount::parse("UseDevelopmentStorage=true").unwrap();
        let sas = a.account_sas(chrono::Duration::hours(1)).unwrap();
        let fields: std::collections::HashMap<_, _> = url::form_urlencoded::parse(sas.as_bytes())
            .into_owned()
            .collect();
        for k in ["sv", "ss", "srt", "sp", "st", "se", "spr", "sig"] {
            assert!(fields.contains_key(k), "{k} missing in {sas}");
        }
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&fields["sig"])
                .unwrap()
                .len(),
            32
        );
        assert!(!sas.contains(DEV_KEY) && !format!("{a:?}").contains(DEV_KEY));
        assert_eq!(fields["spr"], "https,http", "Azurite listens on plain HTTP");
    }

    #[test]
    fn a_sas_in_the_setting_is_refused_without_being_quoted() {
        for setting in [
            "https://acct.blob.core.windows.net/?sv=2022-11-02&sp=rwdl&sig=c2VjcmV0",
            "AccountName=acct;BlobEndpoint=https://acct.blob.core.windows.net?sig=c2VjcmV0",
        ] {
            let e = StorageAccount::parse(setting).unwrap_err().to_string();
            assert!(e.contains("must not carry a query"), "{e}");
            assert!(!e.contains("c2VjcmV0") && !e.contains("rwdl"), "{e}");
        }
    }

    #[test]
    fn account_sas_for_a_real_account_is_https_only() {
        let key = base64::engine::general_purpose::STANDARD.encode(b"k");
        for setting in [
            format!("AccountName=acct;AccountKey={key}"),
            format!("DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={key}"),
            format!("AccountName=acct;AccountKey={key};BlobEndpoint=https://acct.blob.core.windows.net;QueueEndpoint=http://127.0.0.1:1"),
        ] {
            let a = StorageAccount::parse(&setting).unwrap();
            assert!(!a.is_emulator(), "{setting}");
            let sas = a.account_sas(chrono::Duration::hours(1)).unwrap();
            let fields: std::collections::HashMap<_, _> =
                url::form_urlencoded::parse(sas.as_bytes()).into_owned().collect();
            assert_eq!(fields["spr"], "https", "{setting}");
        }
        let local = StorageAccount::parse(&format!(
            "AccountName=local;AccountKey={key};BlobEndpoint=http://localhost:10000/local;QueueEndpoint=http://[::1]:10001/local"
        ))
        .unwrap();
        assert!(local.is_emulator());
        assert!(StorageAccount::parse(
            "UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://azurite"
        )
        .unwrap()
        .is_emulator());
    }
}
