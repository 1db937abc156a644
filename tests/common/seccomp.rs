//! A seccomp filter that makes the io_uring syscalls fail with EPERM, as Docker's default profile does, installed in a child before exec.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// The `AUDIT_ARCH_*` value of this build's architecture (linux/audit.h; not in the libc crate),
/// or None where the filter is not written for it.
fn audit_arch() -> Option<u32> {
    if cfg!(target_arch = "x86_64") {
        Some(0xC000_003E)
    } else if cfg!(target_arch = "aarch64") {
        Some(0xC000_00B7)
    } else {
        None
    }
}

/// Whether `deny_io_uring` can filter on this architecture; tests that need it skip elsewhere.
pub fn io_uring_filter_supported() -> bool {
    audit_arch().is_some()
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter { code: code as u16, jt: 0, jf: 0, k }
}

fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16, jt, jf, k }
}

/// The classic-BPF program: on this architecture, io_uring_setup/enter/register return EPERM;
/// everything else (and any other architecture's syscalls) is allowed.
fn program(arch: u32) -> Vec<libc::sock_filter> {
    // struct seccomp_data: int nr at offset 0, __u32 arch at offset 4
    let load = |offset| stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let ret = |k| stmt(libc::BPF_RET | libc::BPF_K, k);
    // the io_uring syscalls share their numbers on x86_64 and the generic table aarch64 uses
    let nrs = [libc::SYS_io_uring_setup, libc::SYS_io_uring_enter, libc::SYS_io_uring_register];
    vec![
        load(4),
        jeq(arch, 0, 4), // other arch → allow
        load(0),
        jeq(nrs[0] as u32, 3, 0), // → EPERM
        jeq(nrs[1] as u32, 2, 0),
        jeq(nrs[2] as u32, 1, 0),
        ret(libc::SECCOMP_RET_ALLOW),
        ret(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ]
}

/// Make `cmd`'s process (after fork, before exec) unable to use io_uring: its syscalls fail with
/// EPERM, as under Docker's default seccomp profile. Panics where `io_uring_filter_supported()`
/// is false.
pub fn deny_io_uring(cmd: &mut Command) -> &mut Command {
    let mut filter = program(audit_arch().expect("no io_uring seccomp filter for this architecture"));
    // SAFETY: the closure only makes two prctl calls (async-signal-safe) on memory built before
    // the fork; `filter` outlives the spawn because the closure owns it.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_mut_ptr() };
            // without CAP_SYS_ADMIN a filter may only be installed once no_new_privs is set
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}
