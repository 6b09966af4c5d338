//! Recording links from the real HTTP server: a recorded call's link, as the CRM got it
//! in the call history, streams the file's bytes; `Range` works (browsers seek in
//! audio); a tampered or expired link gets 403, a link to an unknown call 404, and
//! nothing outside the PBX's directories is ever served. A link opened while the
//! recording is still being written (MixMonitor closes its file after the hang-up, a
//! post-processing step converts it) waits for the file.

mod common;

use std::time::Duration;

use callbridge::links::LinkKey;
use callbridge::time::Timestamp;
use common::Harness;

/// The recording `iax2/recording` names (MIXMONITOR_FILENAME), as Asterisk wrote it.
const RECORDING: &str = "20261125-172756-+79167654321-74951234500-1795627676.33.wav";

fn audio() -> Vec<u8> {
    let mut bytes = b"RIFF\x24\x10\x00\x00WAVEfmt ".to_vec();
    bytes.extend((0..20_000u32).map(|i| (i % 251) as u8));
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_calls_link_streams_the_file_and_refuses_everything_else() {
    let spool = tempfile::tempdir().expect("tempdir");
    let monitor = spool.path().join("monitor");
    std::fs::create_dir_all(&monitor).expect("mkdir");
    std::fs::write(monitor.join(RECORDING), audio()).expect("write recording");
    std::fs::write(spool.path().join("secret.txt"), b"not audio").expect("write");
    let (h, url) = recorded_call(&monitor, "2m").await;
    let (base, path_and_query) = url.split_once("/recordings/").expect("a recordings link");
    let base = format!("{base}/recordings/");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    // The whole file.
    let whole = client.get(&url).send().await.expect("GET");
    assert_eq!(whole.status(), 200);
    let content_type = whole
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(content_type.starts_with("audio/"), "{content_type}");
    assert_eq!(whole.bytes().await.expect("body").to_vec(), audio());

    // A range, as a browser's audio player asks when seeking.
    let part = client
        .get(&url)
        .header("Range", "bytes=1000-1999")
        .send()
        .await
        .expect("GET range");
    assert_eq!(part.status(), 206);
    let total = audio().len();
    assert_eq!(
        part.headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok()),
        Some(format!("bytes 1000-1999/{total}").as_str())
    );
    assert_eq!(
        part.bytes().await.expect("body").to_vec(),
        audio()[1000..2000]
    );

    // Tampered: another signature, another expiry, another call.
    let (id_part, query) = path_and_query.split_once('?').expect("query");
    let sig = query
        .split('&')
        .find_map(|p| p.strip_prefix("sig="))
        .expect("sig");
    let exp = query
        .split('&')
        .find_map(|p| p.strip_prefix("exp="))
        .expect("exp");
    let mut other_sig = sig.to_string().into_bytes();
    other_sig[0] = if other_sig[0] == b'a' { b'b' } else { b'a' };
    let other_sig = String::from_utf8(other_sig).expect("ascii");
    for bad in [
        format!("{base}{id_part}?exp={exp}&sig={other_sig}"),
        format!(
            "{base}{id_part}?exp={}&sig={sig}",
            exp.parse::<i64>().unwrap_or(0) + 1
        ),
        format!("{base}cb-office-1795627676.34?exp={exp}&sig={sig}"),
        format!("{base}{id_part}"),
    ] {
        let r = client.get(&bad).send().await.expect("GET");
        assert_eq!(r.status(), 403, "{bad}");
    }

    // Expired: signed with the right key, but its time is over.
    let key = LinkKey::new("test-link-secret");
    let past = Timestamp(Timestamp::now().0 - 60_000_000);
    let expired = key.link(&format!("http://{}", h.running.http_addr), id_part, past);
    let r = client.get(&expired).send().await.expect("GET");
    assert_eq!(r.status(), 403);
    assert_eq!(r.text().await.unwrap_or_default(), "this link has expired");

    // Validly signed, but no such call, or a call id that tries to climb out.
    let later = Timestamp(Timestamp::now().0 + 3_600_000_000);
    for id in [
        "cb-office-1.1",
        "../secret.txt",
        "cb-office-..%2F..%2Fsecret.txt",
    ] {
        let link = key.link(&format!("http://{}", h.running.http_addr), id, later);
        let r = client.get(&link).send().await.expect("GET");
        assert!(
            r.status() == 404 || r.status() == 403,
            "{id}: {}",
            r.status()
        );
        assert_ne!(r.bytes().await.unwrap_or_default().as_ref(), b"not audio");
    }
    h.stop().await;
}

/// Starts the daemon with `recordings_dir` and `[http] recording_wait`, plays the
/// recorded call and returns the link the CRM got, as reachable here.
async fn recorded_call(monitor: &std::path::Path, wait: &str) -> (Harness, String) {
    let dir = format!("recordings_dir = \"{}\"", monitor.display());
    let h = Harness::start_custom(common::crm_options(), |toml| {
        toml.replace("{extra_pbx}", &dir).replace(
            "link_secret = \"test-link-secret\"",
            &format!("link_secret = \"test-link-secret\"\nrecording_wait = \"{wait}\""),
        )
    })
    .await;
    h.play("iax2/recording").await;
    let state = h
        .wait_crm("the recorded call in the history", |s| !s.calls.is_empty())
        .await;
    let link = state.calls[0].record_url.clone().expect("recordUrl");
    assert!(
        !link.contains("/var/spool"),
        "no PBX path in the CRM: {link}"
    );
    let (_, path_and_query) = link.split_once("/recordings/").expect("a recordings link");
    assert!(path_and_query.contains("?exp=") && path_and_query.contains("&sig="));
    let url = format!("http://{}/recordings/{path_and_query}", h.running.http_addr);
    (h, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_opened_before_the_recording_is_written_waits_for_it() {
    let spool = tempfile::tempdir().expect("tempdir");
    let monitor = spool.path().join("monitor");
    std::fs::create_dir_all(&monitor).expect("mkdir");
    // Nothing on disk yet when the call ends: the history still gets its link.
    let (h, url) = recorded_call(&monitor, "5m").await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    // Opened now; the file appears a second later, converted to mp3 by a
    // post-processing step (the .wav MixMonitor named is gone).
    let opened = std::time::Instant::now();
    let get = tokio::spawn({
        let (client, url) = (client.clone(), url.clone());
        async move { client.get(&url).send().await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mp3 = RECORDING.replace(".wav", ".mp3");
    std::fs::write(monitor.join(&mp3), audio()).expect("write recording");
    let response = get.await.expect("join").expect("GET");
    assert_eq!(response.status(), 200);
    assert!(
        opened.elapsed() >= Duration::from_secs(1),
        "answered only once the file was there"
    );
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("audio/mpeg")
    );
    assert_eq!(response.bytes().await.expect("body").to_vec(), audio());

    // A recording that does not come within the time a player waits: come back later.
    std::fs::remove_file(monitor.join(&mp3)).expect("rm");
    let r = client.get(&url).send().await.expect("GET");
    assert_eq!(r.status(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("5")
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_still_missing_after_the_wait_is_not_found() {
    let spool = tempfile::tempdir().expect("tempdir");
    let monitor = spool.path().join("monitor");
    std::fs::create_dir_all(&monitor).expect("mkdir");
    let (h, url) = recorded_call(&monitor, "1s").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let client = reqwest::Client::new();
    let opened = std::time::Instant::now();
    let r = client.get(&url).send().await.expect("GET");
    assert_eq!(r.status(), 404);
    assert!(
        opened.elapsed() < Duration::from_secs(5),
        "not held once the wait is over"
    );
    h.stop().await;
}
