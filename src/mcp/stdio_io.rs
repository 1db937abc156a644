//! The pipes of every stdio child on one epoll thread: stdout framed into lines, stderr lines to the log, bounded non-blocking writes to stdin, exit detection (pidfd), and the SIGKILL that follows an unanswered SIGTERM.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

/// Longest line accepted from a child's stdout (a message is one line); a longer one ends it.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
/// Longest stderr line logged; the rest of it is dropped.
const MAX_LOG_LINE: usize = 16 * 1024;
/// Bytes that may wait for a child to read its stdin before further writes are refused: a
/// child that stops reading cannot make the gateway buffer without end.
const MAX_PENDING_INPUT: usize = 16 * 1024 * 1024;
/// A partial line buffer this large is given back once it is empty again (idle children keep
/// no buffer).
const KEEP_BUF: usize = 4096;

/// What a child's owner does with it, called on the I/O thread (so never blocking).
pub trait Events: Send {
    /// One line the child wrote on stdout, without its newline.
    fn line(&mut self, line: &[u8]);
    /// The child's stdout ended, it exited, or it broke the framing: its process group is to
    /// be killed and it reaped (`child`), and its owner told.
    fn exited(self: Box<Self>, child: &mut Child);
}

/// Why a write to a child's stdin was refused.
#[derive(Debug)]
pub enum InputError {
    /// The child is gone (or its stdin is closed).
    Closed,
    /// It has not read the `MAX_PENDING_INPUT` bytes written before.
    Full,
}

/// A child's stdin: lines written at once when the pipe takes them, else queued and written by
/// the I/O thread when it is writable again.
pub struct Input {
    id: u64,
    state: Mutex<InputState>,
}

struct InputState {
    /// `None` once closed: writes then fail, and the descriptor cannot be reused under them.
    fd: Option<OwnedFd>,
    queue: VecDeque<Vec<u8>>,
    /// Bytes of the front entry already written.
    offset: usize,
    pending: usize,
}

impl Input {
    /// Write one message (a newline is added).
    pub fn send(&self, mut line: Vec<u8>) -> Result<(), InputError> {
        line.push(b'\n');
        let mut st = self.state.lock().map_err(|_| InputError::Closed)?;
        let Some(fd) = st.fd.as_ref().map(AsRawFd::as_raw_fd) else { return Err(InputError::Closed) };
        if st.queue.is_empty() {
            match write_some(fd, &line) {
                Ok(n) if n == line.len() => return Ok(()),
                Ok(n) => st.offset = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => st.offset = 0,
                Err(_) => return Err(InputError::Closed),
            }
            st.pending = line.len() - st.offset;
            st.queue.push_back(line);
            // the I/O thread finishes the write when the child has read some
            arm_output(fd, self.id);
            return Ok(());
        }
        if st.pending + line.len() > MAX_PENDING_INPUT {
            return Err(InputError::Full);
        }
        st.pending += line.len();
        st.queue.push_back(line);
        Ok(())
    }

    /// Write what is queued, as far as the pipe takes it; re-arm for the rest.
    fn flush(&self) {
        let Ok(mut guard) = self.state.lock() else { return };
        let st = &mut *guard;
        let Some(fd) = st.fd.as_ref().map(AsRawFd::as_raw_fd) else { return };
        while let Some(front) = st.queue.front() {
            let from = st.offset;
            let len = front.len();
            match write_some(fd, &front[from..]) {
                Ok(n) => {
                    st.pending -= n;
                    if from + n == len {
                        st.queue.pop_front();
                        st.offset = 0;
                    } else {
                        st.offset += n;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    arm_output(fd, self.id);
                    return;
                }
                Err(_) => {
                    // the child closed its stdin: what waits is lost, and later writes fail
                    st.queue.clear();
                    st.pending = 0;
                    st.fd = None;
                    return;
                }
            }
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.fd = None;
            st.queue.clear();
            st.pending = 0;
        }
    }
}

fn write_some(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for `buf.len()` bytes; `fd` is open (its owner's lock is held)
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Ask for one writability event of a child's stdin (epoll_ctl is safe from any thread).
fn arm_output(fd: RawFd, id: u64) {
    let Some(io) = IO.get() else { return };
    let mut ev = libc::epoll_event { events: (libc::EPOLLOUT | libc::EPOLLONESHOT) as u32, u64: token(id, STDIN) };
    // SAFETY: plain syscalls on descriptors we own; `ev` lives across the calls
    unsafe {
        if libc::epoll_ctl(io.epoll, libc::EPOLL_CTL_MOD, fd, &mut ev) < 0 {
            libc::epoll_ctl(io.epoll, libc::EPOLL_CTL_ADD, fd, &mut ev);
        }
    }
}

const STDOUT: u64 = 0;
const STDERR: u64 = 1;
const STDIN: u64 = 2;
const PIDFD: u64 = 3;
/// The eventfd that wakes the loop for new children and timers.
const WAKE: u64 = u64::MAX;

fn token(id: u64, kind: u64) -> u64 {
    (id << 2) | kind
}

/// The I/O thread's handles, shared with the threads that hand it children.
struct Io {
    epoll: RawFd,
    wake: RawFd,
    inbox: Mutex<Inbox>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct Inbox {
    children: Vec<Entry>,
    /// `(when, child id)`: SIGKILL for its group then, unless it has exited.
    kills: Vec<(Instant, u64)>,
}

static IO: OnceLock<Io> = OnceLock::new();

fn io() -> io::Result<&'static Io> {
    if let Some(io) = IO.get() {
        return Ok(io);
    }
    static START: Mutex<()> = Mutex::new(());
    let _g = START.lock().map_err(|_| io::Error::other("stdio I/O start poisoned"))?;
    if let Some(io) = IO.get() {
        return Ok(io);
    }
    // SAFETY: plain syscalls; the results are checked
    let (epoll, wake) =
        unsafe { (libc::epoll_create1(libc::EPOLL_CLOEXEC), libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) };
    if epoll < 0 || wake < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: WAKE };
    // SAFETY: both descriptors were just created
    if unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, wake, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let _ = IO.set(Io { epoll, wake, inbox: Mutex::new(Inbox::default()), next_id: AtomicU64::new(1) });
    let io = IO.get().ok_or_else(|| io::Error::other("stdio I/O not set"))?;
    std::thread::Builder::new().name("mcp-stdio-io".into()).spawn(move || run(io))?;
    Ok(io)
}

impl Io {
    fn wake(&self) {
        // SAFETY: writes 8 bytes from a live u64 to our eventfd
        unsafe {
            libc::eventfd_write(self.wake, 1);
        }
    }
}

/// One child as the I/O thread keeps it.
struct Entry {
    id: u64,
    name: Arc<str>,
    child: Child,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    pidfd: Option<OwnedFd>,
    input: Arc<Input>,
    out_buf: Vec<u8>,
    err_buf: Vec<u8>,
    events: Option<Box<dyn Events>>,
}

/// Hand `child` (spawned with piped stdin, stdout and stderr) to the I/O thread. `events` gets
/// its stdin and returns what handles its output; the first write may be made at once.
pub fn start(
    name: Arc<str>,
    mut child: Child,
    events: impl FnOnce(Arc<Input>) -> Box<dyn Events>,
) -> io::Result<Arc<Input>> {
    let io = io()?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other("no pipes"));
    };
    // SAFETY: each raw descriptor is taken out of its std owner and owned once here
    let (stdin, stdout, stderr) = unsafe {
        (
            OwnedFd::from_raw_fd(stdin.into_raw_fd()),
            OwnedFd::from_raw_fd(stdout.into_raw_fd()),
            OwnedFd::from_raw_fd(stderr.into_raw_fd()),
        )
    };
    for fd in [&stdin, &stdout, &stderr] {
        set_nonblocking(fd.as_raw_fd())?;
    }
    // without pidfds (kernels before 5.3) the end of stdout is the exit
    // SAFETY: pidfd_open(2) on our own child's pid; the result is checked
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::c_int, 0) };
    // SAFETY: a fresh descriptor, owned once
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd as RawFd) });
    let id = io.next_id.fetch_add(1, Ordering::Relaxed);
    let input = Arc::new(Input {
        id,
        state: Mutex::new(InputState { fd: Some(stdin), queue: VecDeque::new(), offset: 0, pending: 0 }),
    });
    let events = events(input.clone());
    let e = Entry {
        id,
        name,
        child,
        stdout: Some(stdout),
        stderr: Some(stderr),
        pidfd,
        input: input.clone(),
        out_buf: Vec::new(),
        err_buf: Vec::new(),
        events: Some(events),
    };
    io.inbox.lock().map_err(|_| io::Error::other("stdio I/O inbox poisoned"))?.children.push(e);
    io.wake();
    Ok(input)
}

/// SIGKILL for the process group of the child whose stdin is `input` at `at`, unless it has
/// exited by then (the end of a grace period after SIGTERM).
pub fn kill_at(input: &Input, at: Instant) {
    let Some(io) = IO.get() else { return };
    if let Ok(mut inbox) = io.inbox.lock() {
        inbox.kills.push((at, input.id));
    }
    io.wake();
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl(2) on a descriptor we own
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn register(epoll: RawFd, fd: &Option<OwnedFd>, tok: u64) {
    if let Some(fd) = fd {
        let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, u64: tok };
        // SAFETY: epoll_ctl(2) on descriptors we own
        unsafe {
            libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut ev);
        }
    }
}

/// The loop: children by id, the SIGKILLs due, and one read buffer for everyone.
fn run(io: &'static Io) {
    let mut children: HashMap<u64, Entry> = HashMap::new();
    let mut kills: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let timeout = match kills.peek() {
            Some(Reverse((at, _))) => {
                let ms = at.saturating_duration_since(Instant::now()).as_millis();
                i32::try_from(ms + 1).unwrap_or(i32::MAX)
            }
            None => -1,
        };
        // SAFETY: `events` has room for `len` entries
        let n = unsafe { libc::epoll_wait(io.epoll, events.as_mut_ptr(), events.len() as i32, timeout) };
        let n = if n < 0 { 0 } else { n as usize };
        for ev in &events[..n] {
            let tok = ev.u64;
            if tok == WAKE {
                let mut v = 0;
                // SAFETY: reads 8 bytes into a live u64
                unsafe {
                    libc::eventfd_read(io.wake, &mut v);
                }
                let inbox = io.inbox.lock().map(|mut i| std::mem::take(&mut *i)).unwrap_or_default();
                for e in inbox.children {
                    register(io.epoll, &e.stdout, token(e.id, STDOUT));
                    register(io.epoll, &e.stderr, token(e.id, STDERR));
                    register(io.epoll, &e.pidfd, token(e.id, PIDFD));
                    children.insert(e.id, e);
                }
                kills.extend(inbox.kills.into_iter().map(Reverse));
                continue;
            }
            let (id, kind) = (tok >> 2, tok & 3);
            let Some(e) = children.get_mut(&id) else { continue };
            let done = match kind {
                STDOUT => {
                    let ended = read_stdout(e, &mut buf);
                    if ended && e.pidfd.is_some() {
                        // its exit (now: it is killed) is what the pidfd reports; reaping waits
                        // for that instead of blocking this thread
                        kill_group(e.child.id(), libc::SIGKILL);
                        e.stdout = None;
                        false
                    } else {
                        ended
                    }
                }
                STDERR => {
                    read_stderr(e, &mut buf);
                    false
                }
                STDIN => {
                    e.input.flush();
                    false
                }
                // the process exited: what it wrote before is read, then it is reaped
                _ => {
                    read_stdout(e, &mut buf);
                    read_stderr(e, &mut buf);
                    true
                }
            };
            if done {
                if let Some(e) = children.remove(&id) {
                    finish(e);
                }
            }
        }
        let now = Instant::now();
        while kills.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            let Some(Reverse((_, id))) = kills.pop() else { break };
            if let Some(e) = children.get(&id) {
                kill_group(e.child.id(), libc::SIGKILL);
            }
        }
    }
}

/// Read what stdout holds and hand over its lines; true when the child is done (end of
/// stream, a read error, or a line over the limit).
fn read_stdout(e: &mut Entry, buf: &mut [u8]) -> bool {
    let Some(fd) = e.stdout.as_ref().map(AsRawFd::as_raw_fd) else { return true };
    loop {
        match read_some(fd, buf) {
            Ok(0) => {
                if !e.out_buf.is_empty() {
                    let last = std::mem::take(&mut e.out_buf);
                    deliver(e, &last);
                }
                return true;
            }
            Ok(n) => {
                if split_lines(&mut e.out_buf, &buf[..n], |l| {
                    if let Some(ev) = e.events.as_mut() {
                        ev.line(l);
                    }
                })
                .is_err()
                {
                    eprintln!("mcp target {}: a line longer than {MAX_LINE_BYTES} bytes; ending the process", e.name);
                    return true;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if e.out_buf.is_empty() && e.out_buf.capacity() > KEEP_BUF {
                    e.out_buf = Vec::new();
                }
                return false;
            }
            Err(_) => return true,
        }
    }
}

fn deliver(e: &mut Entry, line: &[u8]) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(ev) = e.events.as_mut() {
        ev.line(line);
    }
}

/// Append `data` to the partial line in `acc` and call `f` with every whole line (without its
/// newline or a CR before it); `Err` when the partial line grows past `MAX_LINE_BYTES`.
fn split_lines(acc: &mut Vec<u8>, mut data: &[u8], mut f: impl FnMut(&[u8])) -> Result<(), ()> {
    while let Some(i) = data.iter().position(|&b| b == b'\n') {
        let (head, rest) = (&data[..i], &data[i + 1..]);
        if acc.is_empty() {
            f(head.strip_suffix(b"\r").unwrap_or(head));
        } else {
            acc.extend_from_slice(head);
            let line = std::mem::take(acc);
            f(line.strip_suffix(b"\r").unwrap_or(&line));
            // the allocation is kept for the next partial line
            *acc = line;
            acc.clear();
        }
        data = rest;
    }
    acc.extend_from_slice(data);
    if acc.len() > MAX_LINE_BYTES {
        return Err(());
    }
    Ok(())
}

fn read_stderr(e: &mut Entry, buf: &mut [u8]) {
    let Some(fd) = e.stderr.as_ref().map(AsRawFd::as_raw_fd) else { return };
    loop {
        match read_some(fd, buf) {
            Ok(0) => {
                if !e.err_buf.is_empty() {
                    eprintln!("mcp target {}: {}", e.name, String::from_utf8_lossy(&e.err_buf));
                }
                e.err_buf = Vec::new();
                // no more events from it
                e.stderr = None;
                return;
            }
            Ok(n) => {
                let name = &e.name;
                let _ = split_lines(&mut e.err_buf, &buf[..n], |l| {
                    eprintln!("mcp target {name}: {}", String::from_utf8_lossy(l));
                });
                if e.err_buf.len() > MAX_LOG_LINE {
                    e.err_buf.truncate(MAX_LOG_LINE);
                    eprintln!("mcp target {name}: {} …", String::from_utf8_lossy(&e.err_buf));
                    e.err_buf.clear();
                }
            }
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if e.err_buf.is_empty() && e.err_buf.capacity() > KEEP_BUF {
                    e.err_buf = Vec::new();
                }
                return;
            }
            Err(_) => {
                e.stderr = None;
                return;
            }
        }
    }
}

fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes; `fd` is open
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The child is done: its descriptors are closed (which takes them out of epoll), its stdin
/// refuses writes, and its owner kills its group and reaps it.
fn finish(mut e: Entry) {
    e.stdout = None;
    e.stderr = None;
    e.pidfd = None;
    e.input.close();
    if let Some(ev) = e.events.take() {
        ev.exited(&mut e.child);
    }
}

/// Signal a child's whole process group (each child leads its own), so helpers it started go too.
pub fn kill_group(pid: u32, sig: i32) {
    // pid 0 would name the gateway's own group
    let Ok(pid @ 1..) = i32::try_from(pid) else { return };
    // SAFETY: kill(2) has no memory effects; a negative pid names the child's own group
    unsafe {
        libc::kill(-pid, sig);
    }
}

/// An input that belongs to no child (unit tests): every write fails.
#[cfg(test)]
pub fn detached() -> Arc<Input> {
    Arc::new(Input { id: 0, state: Mutex::new(InputState { fd: None, queue: VecDeque::new(), offset: 0, pending: 0 }) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_reads() {
        let mut acc = Vec::new();
        let mut got = Vec::new();
        split_lines(&mut acc, b"{\"a\":1}\n{\"b\"", |l| got.push(l.to_vec())).unwrap();
        split_lines(&mut acc, b":2}\r\n\n{", |l| got.push(l.to_vec())).unwrap();
        assert_eq!(got, [b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec(), Vec::new()]);
        assert_eq!(acc, b"{");
        let mut big = Vec::new();
        assert!(split_lines(&mut big, &vec![b'x'; MAX_LINE_BYTES + 1], |_| {}).is_err());
    }

    struct Quiet;

    impl Events for Quiet {
        fn line(&mut self, _: &[u8]) {}
        fn exited(self: Box<Self>, child: &mut Child) {
            let _ = child.wait();
        }
    }

    #[test]
    fn a_child_that_does_not_read_its_input_is_not_buffered_for_without_end() {
        use std::process::{Command, Stdio};
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let input = start("t".into(), child, |_| Box::new(Quiet)).unwrap();
        let line = vec![b'x'; 1024 * 1024 - 1];
        let mut sent = 0;
        let refused = loop {
            match input.send(line.clone()) {
                Ok(()) => sent += 1,
                Err(e) => break e,
            }
            assert!(sent <= 64, "never refused");
        };
        assert!(matches!(refused, InputError::Full), "{refused:?}");
        // the pipe took some, the queue holds at most the limit
        assert!(input.state.lock().unwrap().pending <= MAX_PENDING_INPUT);
        assert!(sent >= MAX_PENDING_INPUT / line.len());
        // SAFETY: kill(2) on the child started above
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
}
