//! Watching the config file for changes: inotify on its directory, with polling when inotify cannot start.
//!
//! The directory is watched, not the file: editors save by writing a new file and renaming it over
//! the old one, and a Kubernetes ConfigMap volume swaps a `..data` symlink to a new directory, and
//! neither touches the inode a watch on the file would hold. Whatever happens in the directory, the
//! file is looked at again (through its symlinks) and a change of its contents or metadata is one
//! reload, however many events the save took.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What identifies one version of the file. Size and modification time alone miss a replacement
/// that keeps both (`cp -p`, `rsync -t`, a ConfigMap's new copy), and the inode does not help
/// either: a file renamed over the old one often gets the inode number just freed. The contents'
/// hash catches what the metadata misses; the metadata keeps a `touch` meaning "reload".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    len: u64,
    mtime: Option<SystemTime>,
    hash: u64,
}

/// The file's stamp, through symlinks; `None` while it is missing or unreadable.
pub fn stamp(p: &Path) -> Option<Stamp> {
    use std::hash::{Hash, Hasher};
    let m = std::fs::metadata(p).ok()?;
    let bytes = std::fs::read(p).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(Stamp { ino: m.ino(), len: m.len(), mtime: m.modified().ok(), hash: h.finish() })
}

/// How the file is watched: `RINGGATE_CONFIG_WATCH` and `RINGGATE_CONFIG_POLL_INTERVAL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Poll from the start, never trying inotify: for file systems whose changes inotify does
    /// not see (NFS, some FUSE mounts, a bind mount replaced from outside).
    pub poll_only: bool,
    /// Between polls, when polling.
    pub interval: Duration,
}

impl Default for Mode {
    fn default() -> Self {
        Mode { poll_only: false, interval: Duration::from_millis(250) }
    }
}

impl Mode {
    /// The mode from the values of `RINGGATE_CONFIG_WATCH` (`auto`, the default: inotify,
    /// polling when it cannot start; or `poll`) and `RINGGATE_CONFIG_POLL_INTERVAL` (a duration
    /// such as `250ms`, the default); unset or empty is the default.
    pub fn from_env(watch: Option<&str>, interval: Option<&str>) -> Result<Mode, String> {
        let mut m = Mode::default();
        match watch.map(str::trim) {
            None | Some("" | "auto") => {}
            Some("poll") => m.poll_only = true,
            Some(other) => return Err(format!("RINGGATE_CONFIG_WATCH must be `auto` or `poll`, not `{other}`")),
        }
        if let Some(v) = interval.filter(|v| !v.trim().is_empty()) {
            let d = super::duration::parse(v).map_err(|e| format!("RINGGATE_CONFIG_POLL_INTERVAL: {e}"))?.get();
            if d < Duration::from_millis(1) {
                return Err(format!("RINGGATE_CONFIG_POLL_INTERVAL must be at least 1ms, not `{v}`"));
            }
            m.interval = d;
        }
        Ok(m)
    }
}

/// A save is often several events (write, close, rename, chmod): the file is looked at once no
/// event came for this long.
const QUIET: Duration = Duration::from_millis(50);
/// ... but no later than this after the first one, however busy the directory.
const MAX_DEBOUNCE: Duration = Duration::from_millis(500);
/// With inotify running the file is still looked at this often: a change inotify cannot see (a
/// network file system, a bind mount replaced from outside) is caught, late.
const SAFETY_POLL: Duration = Duration::from_secs(5);

/// Watch `path` on a thread of its own as `mode` says, calling `changed` after each change of the
/// file (compared with `baseline`, its stamp before it was first read) until `changed` returns
/// false.
pub fn spawn(
    path: PathBuf,
    baseline: Option<Stamp>,
    mode: Mode,
    log: fn(&str),
    changed: impl FnMut() -> bool + Send + 'static,
) {
    let _ = std::thread::Builder::new().name("ringgate-watch".into()).spawn(move || {
        let mut changed = changed;
        let mut last = baseline;
        // false once `changed` says to stop
        let mut look = |path: &Path| {
            let now = stamp(path);
            if now.is_some() && now != last {
                last = now;
                return changed();
            }
            true
        };
        let every = mode.interval;
        if mode.poll_only {
            log(&format!("config watch: polling file={path:?} every {every:?} (RINGGATE_CONFIG_WATCH=poll)"));
            while look(&path) {
                std::thread::sleep(every);
            }
            return;
        }
        let inotify = match Inotify::new(&watch_dirs(&path)) {
            Ok(i) => i,
            Err(e) => {
                log(&format!("config watch: inotify unavailable ({e}); polling file={path:?} every {every:?}"));
                while look(&path) {
                    std::thread::sleep(every);
                }
                return;
            }
        };
        log(&format!("config watch: inotify file={path:?}"));
        // a change made before the watch began is a change too
        while look(&path) {
            match inotify.wait(SAFETY_POLL) {
                Ok(true) => {
                    let first = Instant::now();
                    while first.elapsed() < MAX_DEBOUNCE && matches!(inotify.wait(QUIET), Ok(true)) {}
                    // a ConfigMap swap points the file into a new directory, and a replaced
                    // directory drops its watch: watch what the path leads to now
                    for d in watch_dirs(&path) {
                        let _ = inotify.add(&d);
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    log(&format!("config watch: inotify failed ({e}); polling file={path:?} every {every:?}"));
                    drop(inotify);
                    while look(&path) {
                        std::thread::sleep(every);
                    }
                    return;
                }
            }
        }
    });
}

/// The directories whose entries decide what `path` reads: its own, and the one its symlinks lead
/// to (a ConfigMap's `..2024_01_01_00_00_00.123/`), when that is another.
fn watch_dirs(path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::with_capacity(2);
    let parent = |p: &Path| match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    dirs.push(parent(path));
    if let Ok(real) = std::fs::canonicalize(path) {
        let d = parent(&real);
        if std::fs::canonicalize(&dirs[0]).ok().as_deref() != Some(d.as_path()) {
            dirs.push(d);
        }
    }
    dirs
}

/// An inotify instance watching directories for entries that appear, go, or are written.
struct Inotify {
    fd: i32,
}

const EVENTS: u32 = libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

impl Inotify {
    fn new(dirs: &[PathBuf]) -> std::io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned by the returned value and closed on drop.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let me = Inotify { fd };
        for (i, d) in dirs.iter().enumerate() {
            // only the file's own directory must be watchable; the symlink target's is a bonus
            match me.add(d) {
                Err(e) if i == 0 => return Err(e),
                _ => {}
            }
        }
        Ok(me)
    }

    /// Watch `dir` (again: an existing watch is kept).
    fn add(&self, dir: &Path) -> std::io::Result<()> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
        // SAFETY: a valid fd and a NUL-terminated path that outlives the call.
        if unsafe { libc::inotify_add_watch(self.fd, c.as_ptr(), EVENTS | libc::IN_ONLYDIR) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `timeout` for events and drain them; whether any came.
    fn wait(&self, timeout: Duration) -> std::io::Result<bool> {
        let mut pfd = libc::pollfd { fd: self.fd, events: libc::POLLIN, revents: 0 };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: one pollfd we own.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::Interrupted { Ok(false) } else { Err(e) };
        }
        if n == 0 {
            return Ok(false);
        }
        // the events only say "look again": their names are not needed
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reading into a stack buffer we own, of the length given.
            let r = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if r <= 0 {
                return Ok(true);
            }
        }
    }
}

impl Drop for Inotify {
    fn drop(&mut self) {
        // SAFETY: the fd is ours and closed once.
        unsafe { libc::close(self.fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ringgate-watch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_symlinked_file_is_watched_in_both_directories() {
        let d = tempdir("dirs");
        std::fs::create_dir(d.join("..v1")).unwrap();
        std::fs::write(d.join("..v1/c.yaml"), "x").unwrap();
        std::os::unix::fs::symlink("..v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/c.yaml", d.join("c.yaml")).unwrap();
        let dirs = watch_dirs(&d.join("c.yaml"));
        assert_eq!(dirs, vec![d.clone(), std::fs::canonicalize(d.join("..v1")).unwrap()]);
        std::fs::write(d.join("plain.yaml"), "x").unwrap();
        assert_eq!(watch_dirs(&d.join("plain.yaml")), vec![d.clone()]);
        assert_eq!(watch_dirs(Path::new("c.yaml")), vec![PathBuf::from(".")]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_burst_of_saves_is_seen_and_a_same_size_same_mtime_replace_changes_the_stamp() {
        let d = tempdir("burst");
        let f = d.join("c.yaml");
        std::fs::write(&f, "aaaa").unwrap();
        let before = stamp(&f);
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        spawn(f.clone(), before, Mode::default(), |_| {}, move || tx.send(()).is_ok());
        for i in 0..20 {
            let tmp = d.join(format!(".c.yaml.{i}"));
            std::fs::write(&tmp, "bbbb").unwrap();
            std::fs::File::options().write(true).open(&tmp).unwrap().set_modified(mtime).unwrap();
            std::fs::rename(&tmp, &f).unwrap();
        }
        assert_ne!(stamp(&f), before);
        rx.recv_timeout(Duration::from_secs(10)).expect("the change was seen");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_watch_mode_comes_from_the_environment_and_bad_values_are_refused() {
        assert_eq!(Mode::from_env(None, None), Ok(Mode::default()));
        assert_eq!(Mode::from_env(Some("auto"), Some("")), Ok(Mode::default()));
        let m = Mode::from_env(Some("poll"), Some("20ms")).unwrap();
        assert_eq!(m, Mode { poll_only: true, interval: Duration::from_millis(20) });
        let e = Mode::from_env(Some("inotify"), None).unwrap_err();
        assert_eq!(e, "RINGGATE_CONFIG_WATCH must be `auto` or `poll`, not `inotify`");
        assert!(Mode::from_env(None, Some("soon")).unwrap_err().starts_with("RINGGATE_CONFIG_POLL_INTERVAL: invalid"));
        assert!(Mode::from_env(None, Some("0ms")).is_err());
    }
}
