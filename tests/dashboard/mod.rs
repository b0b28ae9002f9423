//! The dashboard in a real headless browser (issue #14): Debian's chromium (scripts/test
//! installs it) loads `/` from a broker under live traffic; once its scripts ran, the page
//! shows the topic with its message count, live in/out rates above zero, the connections and
//! drawn charts, and loads nothing from outside. The screenshot is kept as
//! `$CARGO_TARGET_DIR/rocktor-dashboard.png` (or in the temp dir).

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn chromium() -> PathBuf {
    if let Ok(p) = std::env::var("ROCKTOR_CHROMIUM") {
        return p.into();
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("which").arg(name).output() {
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).trim().into();
            }
        }
    }
    panic!("chromium is not installed (scripts/test installs Debian's chromium)");
}

/// The text of the element with `id`, as the DOM dump has it.
fn text_of<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id} in the page"));
    let rest = &dom[at..];
    let start = rest.find('>').map_or(0, |i| i + 1);
    let end = rest[start..].find('<').map_or(rest.len(), |i| start + i);
    &rest[start..end]
}

fn figure(dom: &str, id: &str) -> u64 {
    text_of(dom, id)
        .replace(',', "")
        .trim()
        .parse()
        .unwrap_or(0)
}

#[actix_rt::test]
async fn a_headless_browser_shows_live_figures() {
    let browser = chromium();
    let b = BrokerProc::start("async");
    let c = connect(b.broker).await;
    create_topic(&c, "DashboardT", 4).await;
    // Traffic while the page loads: a producer, and a consumer group pulling behind it.
    let running = Arc::new(AtomicBool::new(true));
    let producer = {
        let running = running.clone();
        actix_rt::spawn(async move {
            let mut sent = 0u64;
            while running.load(Ordering::Relaxed) {
                let r = c
                    .request(
                        send_v2("DashboardT", (sent % 4) as i32, b"live", ""),
                        TIMEOUT,
                    )
                    .await
                    .expect("send");
                assert_eq!(r.code, 0);
                sent += 1;
            }
            sent
        })
    };
    actix_rt::time::sleep(std::time::Duration::from_millis(500)).await;
    let out_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());
    let shot = out_dir.join("rocktor-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", b.http);
    let run = {
        let (browser, shot, profile) = (browser.clone(), shot.clone(), profile.path().to_owned());
        actix_rt::task::spawn_blocking(move || {
            let flags = |extra: &str| {
                Command::new(&browser)
                    .args([
                        "--headless",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                    ])
                    .arg(format!("--user-data-dir={}", profile.display()))
                    .args([
                        "--virtual-time-budget=8000",
                        "--window-size=1400,1000",
                        extra,
                    ])
                    .arg(&url)
                    .output()
                    .expect("run chromium")
            };
            let dom = flags("--dump-dom");
            let _ = flags(&format!("--screenshot={}", shot.display()));
            String::from_utf8_lossy(&dom.stdout).into_owned()
        })
    };
    let dom = run.await.unwrap();
    running.store(false, Ordering::Relaxed);
    let sent = producer.await.unwrap();
    assert!(
        dom.contains("DashboardT"),
        "the topic is not on the page: {dom}"
    );
    let rate = figure(&dom, "rate-in");
    assert!(
        rate > 0,
        "no live inbound rate ({rate}) after {sent} sends: {dom}"
    );
    assert!(
        figure(&dom, "connections") >= 1,
        "{}",
        text_of(&dom, "connections")
    );
    assert!(
        text_of(&dom, "disk").ends_with('%'),
        "{}",
        text_of(&dom, "disk")
    );
    assert!(
        dom.matches("<canvas").count() >= 2,
        "the charts were not drawn"
    );
    assert!(
        text_of(&dom, "status").starts_with("updated"),
        "{}",
        text_of(&dom, "status")
    );
    for attr in ["src=\"", "href=\""] {
        for url in dom.split(attr).skip(1).filter(|u| u.starts_with("http")) {
            assert!(
                url.starts_with(&format!("http://{}", b.http)),
                "loads from outside: {url}"
            );
        }
    }
    let png = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(png > 10_000, "no screenshot at {}", shot.display());
    eprintln!(
        "dashboard screenshot: {} ({png} bytes); rate in {rate}/s",
        shot.display()
    );
}
