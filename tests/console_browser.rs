//! The console in a real browser: `socwire up --demo` runs, Debian's Chromium (headless,
//! driven through chromedriver by fantoccini) opens every page and checks what it shows
//! against the stores, clicks Replay on a rejected message and sees it delivered, watches a
//! counter change without a reload, clicks an arrow of a story's graph, and checks that a
//! hostile incident title is text. Screenshots and the host's log go to
//! `target/console-screenshots/` (the screenshots also to `docs/` with
//! `SOCWIRE_UPDATE_SCREENSHOTS=1`).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test says so and passes,
//! except under CI (`CI` set), where it fails.

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use socwire_host::brokers::{Brokers, SbMessage, SystemClock};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `socwire up --demo` on a free port; returns it and the console's address.
fn start_host(data: &Path) -> (Process, String) {
    // The host's log is kept with the screenshots, as a test artefact.
    let artefacts = repo().join("target").join("console-screenshots");
    std::fs::create_dir_all(&artefacts).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_socwire"))
        .args([
            "up",
            "--demo",
            "--quiet",
            "--port",
            "0",
            "--lease-secs",
            "2",
        ])
        .env("SOCWIRE_DATA_DIR", data)
        .env_remove("SOCWIRE_LOG")
        .current_dir(repo())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(artefacts.join("host.log")).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let process = Process(child);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .expect("socwire up printed no address");
        if let Some(rest) = line.split("reports at ").nth(1) {
            let addr = rest.split('/').take(3).collect::<Vec<_>>().join("/");
            return (process, addr);
        }
    }
}

/// Polls `check` until it holds; the deadline only bounds a hung test.
async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let began = Instant::now();
    while !check() {
        assert!(began.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser(profile: &Path) -> (Process, Client) {
    let port = free_port();
    let driver = Process(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            // The machine notes' flags: no sandbox as root, no GPU, and nothing that reaches
            // out to the network on its own (it is closed here).
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1280,1200",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    let began = Instant::now();
    loop {
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps.clone());
        match builder.connect(&url).await {
            Ok(c) => return (driver, c),
            Err(e) if began.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("chromedriver did not start a session: {e}"),
        }
    }
}

async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let dir = repo().join("target").join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), &png).unwrap();
    if std::env::var_os("SOCWIRE_UPDATE_SCREENSHOTS").is_some() {
        std::fs::write(
            repo().join("docs").join(format!("console-{name}.png")),
            &png,
        )
        .unwrap();
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the element `css` shows `want` (the page updates it by itself).
async fn until_text(c: &Client, css: &str, want: &str) {
    let began = Instant::now();
    loop {
        let got = text_of(c, css).await;
        if got == want {
            return;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "{css} shows {got:?}, never {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every HTML element with text of its own whose colour against its background is under
/// WCAG 2.1 AA's 4.5:1 (text with an opaque background somewhere above it), as
/// `"tag.class: ratio (colour on background) text"`.
const CONTRAST_CHECK: &str = r#"
const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
const lum = (c) => {
  const [r, g, b] = c.slice(0, 3).map((v) => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
};
const background = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.99)) return c;
  }
  return [255, 255, 255];
};
const bad = [];
for (const el of document.body.querySelectorAll("*")) {
  if (el.closest("svg")) continue;
  const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
  if (!own || el.offsetParent === null) continue;
  const fg = rgb(getComputedStyle(el).color), bg = background(el);
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  const ratio = (a + 0.05) / (b + 0.05);
  if (ratio < 4.5) bad.push(el.tagName + "." + el.className + ": " + ratio.toFixed(2) + " " + el.textContent.trim().slice(0, 40));
}
return bad;
"#;

async fn assert_contrast(c: &Client, page: &str) {
    let bad = c.execute(CONTRAST_CHECK, vec![]).await.unwrap();
    assert_eq!(bad, json!([]), "{page}: text under 4.5:1");
}

fn brokers(data: &Path) -> Brokers {
    Brokers::open(data, Arc::new(SystemClock)).unwrap()
}

/// Events of `hub` its consumers have not checkpointed (None before the first checkpoint).
fn unprocessed(b: &Brokers, hub: &str) -> Option<i64> {
    let s = b.status().ok()?;
    let h = s.event_hubs.iter().find(|h| h.hub == hub)?;
    if h.consumer_groups.is_empty() {
        return None;
    }
    Some(h.consumer_groups.iter().map(|g| g.unprocessed).sum())
}

#[tokio::test]
async fn the_console_in_chromium() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver"
        );
        eprintln!("skipped: {CHROMIUM} or {CHROMEDRIVER} missing (apt-get install chromium chromium-driver)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (_host, base) = start_host(&data);
    let b = brokers(&data);
    let ledger = socwire::local::SqliteLedger::open(&data.join("ledger.sqlite3")).unwrap();
    let tables = socwire::local::SqliteTables::open(&data.join("tables.sqlite3")).unwrap();
    let limit = Duration::from_secs(150);
    until("the demo incidents to be triaged", limit, || {
        ledger.count("triage:decision:v1:").unwrap_or(0) == 5
    })
    .await;
    until("the demo's alert day to be read", limit, || {
        unprocessed(&b, "alerts") == Some(0)
    })
    .await;
    let workspace = socwire::local::LocalWorkspace::open(
        &data,
        socwire::local::LocalMlOptions {
            provision_ms: 0,
            max_nodes_quota: u32::MAX,
            runner: None,
        },
    )
    .unwrap();
    until("the demo model to be exported", limit, || {
        workspace.models().map(|m| !m.is_empty()).unwrap_or(false)
    })
    .await;

    let profile = dir.path().join("chromium-profile");
    let (_driver, c) = browser(&profile).await;

    // Brokers: the alert hub's events as the store counts them.
    c.goto(&format!("{base}/")).await.unwrap();
    let status = b.status().unwrap();
    let hub = status
        .event_hubs
        .iter()
        .find(|h| h.hub == "alerts")
        .unwrap();
    assert_eq!(
        text_of(&c, r#"[data-k="eh/alerts/events"]"#).await,
        hub.events.to_string()
    );
    for q in &status.queues {
        let cell = text_of(&c, &format!(r#"[data-k="q/{}/visible"]"#, q.name)).await;
        assert!(cell.parse::<i64>().is_ok(), "{}: {cell}", q.name);
    }
    // A counter changes without a reload: one more event on the hub.
    b.hub("alerts")
        .send(Some("demo-site"), b"[]", Default::default())
        .unwrap();
    until_text(
        &c,
        r#"[data-k="eh/alerts/events"]"#,
        &(hub.events + 1).to_string(),
    )
    .await;
    // A command nobody routes goes to ml-unrouted only (the subscription's SQL filter), which
    // sets it aside; Replay sends it back and it is delivered again.
    // The demo's own commands (ProvisionGpuCluster, RunFineTune, ExportModel) never reached it.
    let delivered_before = text_of(&c, r#"[data-k="fn/ml-unrouted/delivered"]"#).await;
    assert_eq!(delivered_before, "0");
    b.service_bus("ml-commands")
        .send(SbMessage {
            message_id: "console-bogus-1".into(),
            subject: Some("ReticulateSplines".into()),
            body: br#"{"commandId":"console-bogus-1"}"#.to_vec(),
            ..Default::default()
        })
        .unwrap();
    until("the unrouted command to be set aside", limit, || {
        b.dead_letter_page(true, 0, 100, 10)
            .map(|p| {
                p.letters
                    .iter()
                    .any(|d| d.command_id.as_deref() == Some("console-bogus-1"))
            })
            .unwrap_or(false)
    })
    .await;
    c.refresh().await.unwrap();
    let reject = b
        .dead_letter_page(true, 0, 100, 10)
        .unwrap()
        .letters
        .into_iter()
        .find(|d| d.command_id.as_deref() == Some("console-bogus-1"))
        .unwrap();
    assert!(text_of(&c, "#rejects").await.contains(&reject.reason));
    let delivered: u64 = text_of(&c, r#"[data-k="fn/ml-unrouted/delivered"]"#)
        .await
        .parse()
        .unwrap();
    assert!(delivered > delivered_before.parse::<u64>().unwrap());
    assert_contrast(&c, "brokers").await;
    screenshot(&c, "brokers").await;
    c.find(Locator::Css(&format!(
        r#"#rejects tr[data-id="{}"] button"#,
        reject.id
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let began = Instant::now();
    loop {
        let url = c.current_url().await.unwrap();
        if url.query().is_some_and(|q| q.contains("replayed=")) {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "no replay: at {url}, page:\n{}",
            c.source().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text_of(&c, "p.notice").await.contains(&reject.id));
    // Delivered again: ml-unrouted's count grows (and it sets the command aside anew).
    until_text(
        &c,
        r#"[data-k="fn/ml-unrouted/delivered"]"#,
        &(delivered + 1).to_string(),
    )
    .await;

    // Incidents: every stored incident, its verdict as the ledger has it, hostile text as text.
    c.goto(&format!("{base}/incidents")).await.unwrap();
    let rows = c
        .find_all(Locator::Css("#incidents tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    assert!(c
        .find_all(Locator::Css("#incidents img"))
        .await
        .unwrap()
        .is_empty());
    let phishing = text_of(&c, "#incidents").await;
    assert!(phishing.contains("User clicked phishing link <img src=x onerror=alert(1)>"));
    c.goto(&format!("{base}/incidents?verdict=High"))
        .await
        .unwrap();
    let high = c
        .find_all(Locator::Css("#incidents tbody tr"))
        .await
        .unwrap()
        .len();
    let mut expected_high = 0;
    for n in 1..=5 {
        use socwire::ports::Ledger as _;
        let key = socwire::functions::triage_incident::decision_key(&socwire::demo::incident_id(n));
        let d: Value = serde_json::from_str(&ledger.get(&key).await.unwrap().unwrap()).unwrap();
        expected_high += usize::from(d["verdict"] == "High");
    }
    assert_eq!(high, expected_high);
    c.goto(&format!("{base}/incidents")).await.unwrap();
    // Open the first incident's findings, by keyboard: their sources show.
    c.execute(
        "document.querySelector('#incidents details summary').focus();",
        vec![],
    )
    .await
    .unwrap();
    c.active_element()
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    assert!(text_of(&c, "#incidents details").await.contains("source:"));
    // The report link opens the triage report the local report store wrote.
    let report = c
        .find(Locator::LinkText("report"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    assert!(report.starts_with("/reports/"), "{report}");
    let answer = reqwest::get(format!("{base}{report}")).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("<html"));
    assert_contrast(&c, "incidents").await;
    screenshot(&c, "incidents").await;

    // Alert stories: the best score first; its graph's arrows list their alerts.
    let mut rows = tables
        .rows(socwire::functions::alert_stream::SUBGRAPH_STREAM)
        .unwrap();
    assert!(!rows.is_empty(), "the demo day wrote stories");
    rows.sort_by(|a, b| {
        b["Score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["Score"].as_f64().unwrap())
    });
    c.goto(&format!("{base}/stories")).await.unwrap();
    let first = text_of(&c, "#stories tbody tr:first-child td:nth-child(2)").await;
    assert_eq!(first, format!("{:.2}", rows[0]["Score"].as_f64().unwrap()));
    assert_contrast(&c, "stories").await;
    screenshot(&c, "stories").await;
    c.find(Locator::LinkText("Open story 1"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let edges = c.find_all(Locator::Css("svg.story g.edge")).await.unwrap();
    assert!(!edges.is_empty());
    // Keyboard: the arrow takes focus and Enter (a real key press) selects it.
    c.execute(
        "document.querySelector('svg.story g.edge').focus();",
        vec![],
    )
    .await
    .unwrap();
    c.active_element()
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter.to_string())
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#edge-alert-table tbody tr"))
        .await
        .unwrap();
    let listed = c
        .find_all(Locator::Css("#edge-alert-table tbody tr"))
        .await
        .unwrap()
        .len();
    assert!(listed >= 1);
    // A click on another arrow lists that one's alerts.
    if let Some(other) = edges.get(1) {
        other.click().await.unwrap();
        let src = other.attr("data-src").await.unwrap().unwrap();
        let dst = other.attr("data-dst").await.unwrap().unwrap();
        c.wait()
            .for_element(Locator::XPath(&format!(
                "//section[@id='edge-alerts'][h2[contains(., '{src} → {dst}')]]//table//tbody/tr"
            )))
            .await
            .unwrap();
    }
    c.execute(
        "document.querySelector('#graph-h').scrollIntoView();",
        vec![],
    )
    .await
    .unwrap();
    assert_contrast(&c, "story").await;
    screenshot(&c, "story").await;

    // GPU: the cluster, the job with its curves drawn from the telemetry, the model's AP.
    c.goto(&format!("{base}/gpu")).await.unwrap();
    assert!(!c
        .find_all(Locator::Css("#clusters tbody tr"))
        .await
        .unwrap()
        .is_empty());
    c.wait()
        .for_element(Locator::Css("svg.curve polyline.loss"))
        .await
        .unwrap();
    let model = &workspace.models().unwrap()[0];
    let meta: Value = serde_json::from_slice(
        &std::fs::read(Path::new(&model.folder).join("metadata.json")).unwrap(),
    )
    .unwrap();
    let row = text_of(&c, "#models tbody tr").await;
    for k in ["averagePrecisionBefore", "averagePrecisionAfter"] {
        let v = format!("{:.3}", meta[k].as_f64().unwrap());
        assert!(row.contains(&v), "{k} {v} not in {row}");
    }
    assert_contrast(&c, "gpu").await;
    screenshot(&c, "gpu").await;
    c.close().await.unwrap();
}
