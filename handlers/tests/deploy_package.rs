//! `socwire package` builds the zip the Functions host runs and refuses secrets; `socwire serve`
//! in Azure mode refuses to start on a missing or wrong setting, naming it.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn socwire() -> Command {
    Command::new(env!("CARGO_BIN_EXE_socwire"))
}

/// A copy of the app root's host.json and function-defs/ to spoil.
fn app_copy(dir: &Path) -> PathBuf {
    let app = dir.join("app");
    std::fs::create_dir_all(app.join("function-defs")).unwrap();
    std::fs::copy(repo_root().join("host.json"), app.join("host.json")).unwrap();
    for entry in std::fs::read_dir(repo_root().join("function-defs")).unwrap() {
        let from = entry.unwrap().path();
        let to = app.join("function-defs").join(from.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        std::fs::copy(from.join("function.json"), to.join("function.json")).unwrap();
    }
    app
}

/// `socwire package` with a limit no binary exceeds: these tests are about what goes into the
/// zip (the glibc limit has tests of its own).
fn package(app_root: &Path, output: &Path) -> std::process::Output {
    socwire()
        .args(["package", "--max-glibc", "99.0", "--output"])
        .arg(output)
        .arg("--app-root")
        .arg(app_root)
        .output()
        .unwrap()
}

#[test]
fn package_has_the_app_root_layout_with_the_run_bit_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("app.zip");
    // A small system ELF stands in for the 150 MB debug build: the layout is the point here
    // (the glibc limit has its own test below, on the real binary).
    let out = socwire()
        .args([
            "package",
            "--binary",
            "/bin/true",
            "--max-glibc",
            "99.0",
            "--output",
        ])
        .arg(&zip_path)
        .arg("--app-root")
        .arg(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("binary: static") || stdout.contains("needs GLIBC_"),
        "{stdout}"
    );

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut names = Vec::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let name = f.name().unwrap().to_string();
        let mode = f.unix_mode().unwrap_or_default() & 0o777;
        if name == "socwire" {
            assert_eq!(mode, 0o755, "the handler binary needs its run bit");
            let mut head = [0u8; 4];
            f.read_exact(&mut head).unwrap();
            assert_eq!(&head, b"\x7fELF");
        } else {
            assert_eq!(mode, 0o644, "{name}");
        }
        names.push(name);
    }
    let mut expected = vec!["socwire".to_string(), "host.json".to_string()];
    let mut functions: Vec<String> = std::fs::read_dir(repo_root().join("function-defs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    functions.sort();
    expected.extend(functions.iter().map(|f| format!("{f}/function.json")));
    assert_eq!(names, expected);
}

#[test]
fn package_refuses_local_settings_and_credentials_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("app.zip");

    let app = app_copy(dir.path());
    std::fs::write(
        app.join("function-defs/triage-incident/local.settings.json"),
        "{}",
    )
    .unwrap();
    let out = package(&app, &output);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("triage-incident/local.settings.json"),
        "{stderr}"
    );
    assert!(!output.exists(), "no zip is left behind");

    let app = app_copy(&dir.path().join("second"));
    let def = app.join("function-defs/alert-stream/function.json");
    let text = std::fs::read_to_string(&def).unwrap().replace(
        "SOCWIRE_EVENTHUBS",
        "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=c2VjcmV0",
    );
    std::fs::write(&def, text).unwrap();
    let out = package(&app, &output);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("alert-stream/function.json"), "{stderr}");
    assert!(stderr.contains("sharedaccesskey="), "{stderr}");
}

#[test]
fn package_refuses_a_binary_for_a_newer_glibc_than_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let out = socwire()
        .args(["package", "--max-glibc", "2.0", "--output"])
        .arg(dir.path().join("app.zip"))
        .arg("--app-root")
        .arg(repo_root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stdout.contains("binary: static") {
        assert!(out.status.success(), "a static binary needs no glibc");
    } else {
        assert!(!out.status.success(), "{stdout}");
        assert!(
            stderr.contains("newer than the Functions image's 2.0"),
            "{stderr}"
        );
    }
}

fn serve_in_azure_mode(settings: &[(&str, &str)]) -> String {
    let mut cmd = socwire();
    cmd.arg("serve")
        .env_clear()
        .env("SOCWIRE_REQUIRE_AZURE", "true")
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "1")
        // Should the check ever pass, the handler exits at once on the closed stdin instead
        // of serving: the test then fails on the exit status rather than hanging.
        .env("SOCWIRE_EXIT_ON_STDIN_EOF", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in settings {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success(), "serve started in Azure mode");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn azure_mode_refuses_to_start_on_a_missing_or_wrong_setting_naming_it() {
    let good = [
        ("SOCWIRE_SENTINEL_ENDPOINT", "https://management.azure.com"),
        ("SOCWIRE_STORAGE", "https://acct.blob.core.windows.net"),
        (
            "SOCWIRE_LOGS_ENDPOINT",
            "https://dce.westeurope-1.ingest.monitor.azure.com",
        ),
        (
            "SOCWIRE_LOGS_DCR_ID",
            "dcr-00000000000000000000000000000000",
        ),
    ];
    let without_logs: Vec<_> = good
        .iter()
        .copied()
        .filter(|(k, _)| !k.starts_with("SOCWIRE_LOGS"))
        .collect();
    let stderr = serve_in_azure_mode(&without_logs);
    assert!(stderr.contains("SOCWIRE_LOGS_ENDPOINT"), "{stderr}");

    let mut wrong = good.to_vec();
    wrong[1] = ("SOCWIRE_STORAGE", "UseDevelopmentStorage=true");
    let stderr = serve_in_azure_mode(&wrong);
    assert!(stderr.contains("SOCWIRE_STORAGE"), "{stderr}");
    assert!(!stderr.contains("SOCWIRE_LOGS_ENDPOINT"), "{stderr}");

    let reference = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/ti-otx-key/)";
    let mut unresolved = good.to_vec();
    unresolved.push(("SOCWIRE_TI_OTX_KEY", reference));
    let stderr = serve_in_azure_mode(&unresolved);
    assert!(stderr.contains("SOCWIRE_TI_OTX_KEY"), "{stderr}");
    assert!(
        !stderr.contains("vault.azure.net"),
        "the value is not echoed: {stderr}"
    );
}

#[test]
fn demo_events_seed_the_local_sentinel_and_print_postable_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = socwire()
        .args(["demo-events", "--incidents", "2", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(e["eventType"], "Sentinel.IncidentCreated");
        let subject = e["subject"].as_str().unwrap();
        assert!(
            subject.contains("/providers/Microsoft.SecurityInsights/incidents/"),
            "{subject}"
        );
        assert_eq!(e["data"]["object"]["id"], subject);
    }
    assert!(dir.path().join("sentinel.sqlite3").is_file());
}
