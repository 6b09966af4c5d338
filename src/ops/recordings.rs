//! Recordings and voicemail messages on the PBX's disk: the file a recording link
//! serves (only from the PBX's configured directories), and finding a file when
//! Asterisk did not name it in an event (a recording made without MixMonitor's
//! variable, a voicemail left on an Asterisk that does not set `VM_MESSAGEFILE`). File
//! look-ups run at the edge, after the call ended. The links are made in `links.rs`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::time::Timestamp;

/// Extensions tried for a path named without one (Asterisk's `VM_MESSAGEFILE` is a stem:
/// `…/INBOX/msg0000`), in the order voicemail.conf formats usually come.
const AUDIO_EXTENSIONS: &[&str] = &["wav", "WAV", "gsm", "mp3", "ogg", "opus"];

/// The file to serve for a call's recording or voicemail message as the PBX named it,
/// if it exists inside one of `allowed` (the PBX's recordings and voicemail
/// directories). The PBX's path is tried as it is, then by its file name in each
/// allowed directory (a PBX whose spool is mounted elsewhere on this machine). A name
/// without an extension (a voicemail stem), or one whose file is gone, is tried with the
/// usual audio extensions: a MixMonitor post-processing command that turns `…wav` into
/// `…mp3` leaves only the latter. Paths are resolved (symlinks, `..`) before the check,
/// so nothing outside the directories is ever served.
pub fn audio_file(named: &str, allowed: &[PathBuf]) -> Option<PathBuf> {
    let roots: Vec<PathBuf> = allowed
        .iter()
        .filter_map(|d| d.canonicalize().ok())
        .collect();
    if roots.is_empty() || named.is_empty() || named.contains('\0') {
        return None;
    }
    let named = Path::new(named);
    let mut candidates: Vec<PathBuf> = vec![named.to_path_buf()];
    if let Some(file) = named.file_name() {
        candidates.extend(allowed.iter().map(|d| d.join(file)));
    }
    for base in candidates {
        let mut tries = vec![base.clone()];
        tries.extend(AUDIO_EXTENSIONS.iter().map(|e| base.with_extension(e)));
        for path in tries {
            let Ok(real) = path.canonicalize() else {
                continue;
            };
            if real.is_file() && roots.iter().any(|root| real.starts_with(root)) {
                return Some(real);
            }
        }
    }
    None
}

/// A file written to less than this long ago may still be growing: MixMonitor closes
/// (and fixes the WAV header of) its file only after the call's channels hung up.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Whether `path` was written to within [`SETTLE`] of `now` (an unreadable time counts
/// as settled: nothing better can be known).
pub fn still_written(path: &Path, now: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|modified| modified + SETTLE > now)
}

/// How many directory entries a look-up reads at most: recording directories of busy
/// PBXs hold years of files.
const MAX_ENTRIES: usize = 20_000;

/// The newest message in `mailbox`'s INBOX (`102@default` →
/// `<voicemail_dir>/default/102/INBOX/msgNNNN.*`) written since `since`; returns its
/// path stem (`…/INBOX/msg0003`), as `VM_MESSAGEFILE` would have named it.
pub fn find_voicemail_message(
    voicemail_dir: &Path,
    mailbox: &str,
    since: Timestamp,
) -> Option<String> {
    let (box_name, context) = mailbox.split_once('@').unwrap_or((mailbox, "default"));
    if !safe_component(box_name) || !safe_component(context) {
        return None;
    }
    let inbox = voicemail_dir.join(context).join(box_name).join("INBOX");
    let since = to_system_time(since);
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(&inbox).ok()?.take(MAX_ENTRIES).flatten() {
        let path = entry.path();
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if !stem.starts_with("msg") || path.extension().is_some_and(|e| e == "txt") {
            continue;
        }
        let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if modified + Duration::from_secs(2) < since {
            continue;
        }
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, path.with_extension("")));
        }
    }
    newest.map(|(_, stem)| stem.to_string_lossy().into_owned())
}

/// A file under `recordings_dir` (up to three directory levels deep, as FreePBX files
/// them by date) whose name contains one of the call's channel ids and that was written
/// since `since`.
pub fn find_recording(
    recordings_dir: &Path,
    channel_ids: &[String],
    since: Timestamp,
) -> Option<PathBuf> {
    let since = to_system_time(since);
    let mut budget = MAX_ENTRIES;
    let mut dirs = vec![(recordings_dir.to_path_buf(), 0usize)];
    let mut best: Option<(SystemTime, PathBuf)> = None;
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            if budget == 0 {
                return best.map(|(_, p)| p);
            }
            budget -= 1;
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let path = entry.path();
            if kind.is_dir() {
                if depth < 3 {
                    dirs.push((path, depth + 1));
                }
                continue;
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !channel_ids
                .iter()
                .any(|id| !id.is_empty() && contains_id(name, id))
            {
                continue;
            }
            let Ok(modified) = entry.metadata().and_then(|m| m.modified()) else {
                continue;
            };
            if modified + Duration::from_secs(2) < since {
                continue;
            }
            if best.as_ref().is_none_or(|(t, _)| modified > *t) {
                best = Some((modified, path));
            }
        }
    }
    best.map(|(_, p)| p)
}

/// `1795627524.9` must not match inside `1795627524.95`: the id has to end at a
/// non-digit.
fn contains_id(name: &str, id: &str) -> bool {
    name.match_indices(id).any(|(i, _)| {
        let before = name[..i].chars().next_back();
        let after = name[i + id.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

fn safe_component(part: &str) -> bool {
    !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\'])
}

fn to_system_time(t: Timestamp) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(t.0.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_files_are_served_only_from_the_pbx_directories() {
        let dir = tempfile::tempdir().expect("tempdir");
        let monitor = dir.path().join("monitor");
        let voicemail = dir.path().join("voicemail/default/102/INBOX");
        std::fs::create_dir_all(&monitor).expect("mkdir");
        std::fs::create_dir_all(&voicemail).expect("mkdir");
        std::fs::write(monitor.join("call.wav"), b"RIFF").expect("write");
        std::fs::write(voicemail.join("msg0000.wav"), b"RIFF").expect("write");
        std::fs::write(dir.path().join("secret.txt"), b"no").expect("write");
        let allowed = vec![monitor.clone(), dir.path().join("voicemail")];
        let real = |p: &Path| p.canonicalize().expect("exists");

        // As the PBX named it; by file name when the PBX's path is another machine's.
        let path = monitor.join("call.wav");
        assert_eq!(
            audio_file(path.to_str().unwrap_or(""), &allowed),
            Some(real(&path))
        );
        assert_eq!(
            audio_file("/var/spool/asterisk/monitor/call.wav", &allowed),
            Some(real(&path))
        );
        // A voicemail stem gets its extension.
        let stem = voicemail.join("msg0000");
        assert_eq!(
            audio_file(stem.to_str().unwrap_or(""), &allowed),
            Some(real(&voicemail.join("msg0000.wav")))
        );
        // Nothing outside: `..`, an absolute path elsewhere, a symlink out, a directory.
        let outside = format!("{}/../secret.txt", monitor.display());
        assert_eq!(audio_file(&outside, &allowed), None);
        assert_eq!(audio_file("/etc/passwd", &allowed), None);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.txt"), monitor.join("link.wav"))
                .expect("symlink");
            let link = monitor.join("link.wav");
            assert_eq!(audio_file(link.to_str().unwrap_or(""), &allowed), None);
        }
        assert_eq!(audio_file(monitor.to_str().unwrap_or(""), &allowed), None);
        assert_eq!(audio_file("", &allowed), None);
        assert_eq!(
            audio_file("/var/spool/asterisk/monitor/none.wav", &allowed),
            None
        );
        // Converted after the call (MixMonitor's post-processing): the named .wav is
        // gone, the .mp3 beside it is the recording.
        std::fs::write(monitor.join("converted.mp3"), b"ID3").expect("write");
        assert_eq!(
            audio_file("/var/spool/asterisk/monitor/converted.wav", &allowed),
            Some(real(&monitor.join("converted.mp3")))
        );
    }

    #[test]
    fn a_file_just_written_may_still_be_growing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("call.wav");
        std::fs::write(&path, b"RIFF").expect("write");
        let now = SystemTime::now();
        assert!(still_written(&path, now));
        assert!(!still_written(
            &path,
            now + SETTLE + Duration::from_millis(10)
        ));
        assert!(!still_written(&dir.path().join("none.wav"), now));
    }

    #[test]
    fn finds_the_newest_voicemail_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inbox = dir.path().join("default/102/INBOX");
        std::fs::create_dir_all(&inbox).expect("mkdir");
        std::fs::write(inbox.join("msg0000.wav"), b"old").expect("write");
        std::fs::write(inbox.join("msg0000.txt"), b"meta").expect("write");
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(inbox.join("msg0001.wav"), b"new").expect("write");
        let since = Timestamp::now();
        let found = find_voicemail_message(dir.path(), "102@default", since).expect("found");
        assert!(found.ends_with("default/102/INBOX/msg0001"), "{found}");
        assert_eq!(
            find_voicemail_message(dir.path(), "103@default", since),
            None
        );
        assert_eq!(
            find_voicemail_message(dir.path(), "../102@default", since),
            None
        );
        // A message from long before the call is not this call's.
        let later = Timestamp(since.0 + 3_600_000_000);
        assert_eq!(
            find_voicemail_message(dir.path(), "102@default", later),
            None
        );
    }

    #[test]
    fn finds_a_recording_by_channel_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day = dir.path().join("2026/11/25");
        std::fs::create_dir_all(&day).expect("mkdir");
        std::fs::write(day.join("q-700-1795627524.95.wav"), b"other").expect("write");
        std::fs::write(day.join("q-700-1795627524.9.wav"), b"ours").expect("write");
        let since = Timestamp(Timestamp::now().0 - 60_000_000);
        let found = find_recording(dir.path(), &["1795627524.9".into()], since).expect("found");
        assert!(found.ends_with("q-700-1795627524.9.wav"), "{found:?}");
        assert_eq!(
            find_recording(dir.path(), &["1795627599.1".into()], since),
            None
        );
    }
}
