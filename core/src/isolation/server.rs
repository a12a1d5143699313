//! The resolver child (`provtarget __serve`): takes its socket off stdin, waits for
//! its library ([`Request::Load`] and the sealed copy; or [`Request::Hold`], checked
//! at once and loaded on [`Request::Go`]), loads it, sends the
//! [`Handshake`], then answers [`Request`]s until the host closes the socket. The
//! host's side is [`super::process`].
#![forbid(unsafe_code)]

use std::{
    fs::File,
    io::{BufRead, BufReader, Cursor, IoSliceMut, Read},
    mem::MaybeUninit,
    os::{
        fd::{AsFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::Path,
    process::ExitCode,
    sync::{mpsc, Arc, Mutex},
    thread,
};

use provtarget_abi::host::PluginResolver;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use super::command::SERVE_COMMAND;
use super::protocol::{send, Answer, Handshake, ProtocolError, Reply, Request};
use super::wire;
use crate::resolver::{CancelToken, RawTargets, ResolveContext};

/// The longest first line (`load`) a child accepts.
const MAX_LOAD_LINE: usize = 64 * 1024;

/// The child's entry point.
pub fn child() -> ExitCode {
    ExitCode::from(serve())
}

/// [`child`]'s work; its exit status.
pub(super) fn serve() -> u8 {
    let socket = match take_socket() {
        Ok(socket) => socket,
        Err(e) => {
            crate::logsink::line(&format!(
                "provtarget: {SERVE_COMMAND} needs the socket provtarget gives it as stdin: {e}"
            ));
            return 2;
        }
    };
    let (first, rest, image) = match first_request(&socket) {
        Ok(got) => got,
        Err(code) => return code,
    };
    let mut requests = match socket.try_clone() {
        Ok(s) => BufReader::new(Cursor::new(rest).chain(s)),
        Err(_) => return 2,
    };
    let (record, plugin) = match first {
        First::Load(path) => provtarget_loader::load_sealed(image, Path::new(&path)),
        First::Hold(path) => {
            // Checked now, while the host verifies the signature; loaded only when
            // it says so.
            let checked = provtarget_loader::check_sealed(image, Path::new(&path));
            if let Err(code) = wait_for_go(&mut requests) {
                return code;
            }
            match checked {
                Ok(sealed) => sealed.load(),
                Err(record) => (*record, None),
            }
        }
    };
    let hello = Handshake::new(wire::report(&record.verdict, record.plugin.as_ref()));
    if send(&socket, &hello).is_err() {
        return 2;
    }
    let Some(plugin) = plugin else {
        return 0;
    };
    answer_requests(&socket, requests, &plugin.info.name, plugin.resolver)
}

/// The first request: load the library now, or hold it until told.
enum First {
    /// [`Request::Load`]: its path.
    Load(String),
    /// [`Request::Hold`]: its path.
    Hold(String),
}

/// After a [`Request::Hold`]: waits for [`Request::Go`]. `Err` is the exit status:
/// 0 when the host withdrew the library (closed the socket, or sent
/// [`Request::Cancel`]), 2 for anything else (said on stderr).
fn wait_for_go(requests: &mut impl BufRead) -> Result<(), u8> {
    let mut line = Vec::new();
    let read = requests
        .take(MAX_LOAD_LINE as u64)
        .read_until(b'\n', &mut line);
    if read.is_err() || line.is_empty() {
        return Err(0);
    }
    let said = match Request::decode(trim_newline(&line)) {
        Ok(Request::Go) => return Ok(()),
        Ok(Request::Cancel) => return Err(0),
        Ok(other) => format!("a {} request while waiting for go", other.kind()),
        Err(e) => e.to_string(),
    };
    crate::logsink::line(&format!("provtarget: {SERVE_COMMAND}: {said}"));
    Err(2)
}

/// Waits for the first request and its descriptor: what to do with the library, the
/// bytes read past that line, and the sealed copy. `Err` is the exit status: 0 when
/// the host ended (or discarded this child) before handing it a library.
fn first_request(socket: &UnixStream) -> Result<(First, Vec<u8>, OwnedFd), u8> {
    let (line, rest, image) = match receive_load(socket) {
        Ok(got) => got,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(0),
        Err(e) => {
            crate::logsink::line(&format!("provtarget: {SERVE_COMMAND} got no library: {e}"));
            return Err(2);
        }
    };
    match (Request::decode(trim_newline(&line)), image) {
        (Ok(Request::Load { path }), Some(image)) => Ok((First::Load(path), rest, image)),
        (Ok(Request::Hold { path }), Some(image)) => Ok((First::Hold(path), rest, image)),
        (Err(e), _) => {
            crate::logsink::line(&format!("provtarget: {SERVE_COMMAND}: {e}"));
            Err(2)
        }
        (Ok(_), _) => {
            crate::logsink::line(&format!(
                "provtarget: {SERVE_COMMAND}: the first request must be a load or hold with a \
                 descriptor"
            ));
            Err(2)
        }
    }
}

/// A line without its `\n`.
fn trim_newline(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Answers the calls read from `requests` on `replies`, one at a time on this
/// thread, while a reader thread takes them off the socket so that a
/// [`Request::Cancel`] reaches the call in progress. Its exit status: 0 when the host
/// closed the socket, 2 when it broke the protocol (said on stderr, re-logged by the
/// host).
fn answer_requests(
    replies: &UnixStream,
    requests: impl Read + Send + 'static,
    name: &str,
    mut resolver: PluginResolver,
) -> u8 {
    let current: Arc<Mutex<Option<CancelToken>>> = Arc::default();
    let (calls, queue) = mpsc::channel();
    let reader = {
        let current = Arc::clone(&current);
        thread::Builder::new()
            .name("requests".into())
            .spawn(move || read_requests(requests, &current, &calls))
    };
    if reader.is_err() {
        return 2;
    }
    for request in queue {
        let request = match request {
            Ok(request) => request,
            Err(e) => {
                crate::logsink::line(&format!("provtarget: {SERVE_COMMAND}: {e}"));
                return 2;
            }
        };
        let token = CancelToken::new();
        *current.lock().unwrap_or_else(|e| e.into_inner()) = Some(token.clone());
        let ctx = ResolveContext::new(name, token);
        let reply = call(&mut resolver, &ctx, request);
        *current.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let Some(reply) = reply else {
            return 2;
        };
        if send(replies, &reply).is_err() {
            break;
        }
    }
    0
}

/// The reader thread: each call goes to `calls`, a cancellation cancels the call in
/// progress, and a line that is no request ends the reading (and the child).
fn read_requests(
    requests: impl Read,
    current: &Mutex<Option<CancelToken>>,
    calls: &mpsc::Sender<Result<Request, ProtocolError>>,
) {
    let cancel_current = || {
        if let Some(token) = current.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            token.cancel();
        }
    };
    for line in BufReader::new(requests).split(b'\n') {
        let Ok(line) = line else { break };
        match Request::decode(&line) {
            Ok(Request::Cancel) => cancel_current(),
            Ok(request) => {
                if calls.send(Ok(request)).is_err() {
                    break;
                }
            }
            Err(e) => {
                let _ = calls.send(Err(e));
                break;
            }
        }
    }
    // The host closed the socket (or is gone, or broke the protocol): end what runs.
    cancel_current();
}

/// Makes the call `request` asks for; its reply. `None` for a second `load` (the
/// host broke the protocol): said on stderr, and the child ends.
fn call(resolver: &mut PluginResolver, ctx: &ResolveContext, request: Request) -> Option<Reply> {
    let (id, answer) = match request {
        Request::Configure { id, config } => (
            id,
            match resolver.configure(ctx, &config) {
                Ok(settings) => Answer::Configured(settings),
                Err(e) => Answer::Error(e),
            },
        ),
        Request::Targets { id } => (
            id,
            match resolver.targets(ctx) {
                Ok(list) => targets_answer(RawTargets::from(list)),
                Err(e) => Answer::Error(e),
            },
        ),
        Request::Load { .. } | Request::Hold { .. } | Request::Go | Request::Cancel => {
            crate::logsink::line(&format!(
                "provtarget: {SERVE_COMMAND}: a {} request after the first",
                request.kind()
            ));
            return None;
        }
    };
    Some(Reply { id, answer })
}

/// The answer of a `targets` call that returned `list`. One over the host's bounds
/// is refused here, with the host's own words, rather than sent (a million targets
/// would be a line of many MiB); the host reads (parses) every answer it gets, so one
/// within the bounds is sent as it is.
fn targets_answer(list: RawTargets) -> Answer {
    let refused = if crate::servers::within_bounds(&list) {
        None
    } else {
        crate::servers::read_answer(&list).err()
    };
    match refused {
        Some(crate::servers::AnswerError::Invalid(e)) => Answer::Error(e),
        // The answer record goes bounded and escaped (the host's `answer_shown`
        // leaves such texts as they are).
        _ => Answer::Targets {
            list: list.to_vec(),
            answer: crate::resolver::answer_shown(list.answer()),
        },
    }
}

/// The socket the host gave as stdin, moved to a descriptor of its own, with
/// `/dev/null` put at 0 instead (before any plugin code runs here).
fn take_socket() -> std::io::Result<UnixStream> {
    use std::os::unix::fs::FileTypeExt;
    let socket = File::from(rustix::io::fcntl_dupfd_cloexec(
        std::io::stdin().as_fd(),
        3,
    )?);
    if !socket.metadata()?.file_type().is_socket() {
        return Err(std::io::Error::other("stdin is not a socket"));
    }
    let null = File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(UnixStream::from(OwnedFd::from(socket)))
}

/// Reads the first line and the descriptor sent with it; returns the line, any bytes
/// read past it, and the descriptor. `UnexpectedEof` when the host closed the socket
/// first.
fn receive_load(socket: &UnixStream) -> std::io::Result<(Vec<u8>, Vec<u8>, Option<OwnedFd>)> {
    let mut got = Vec::new();
    let mut image = None;
    loop {
        let mut buf = [0u8; 4096];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let received = rustix::net::recvmsg(
            socket,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                // The first descriptor is the library; any other is closed here.
                for fd in fds {
                    image.get_or_insert(fd);
                }
            }
        }
        if received.bytes == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..received.bytes]);
        if let Some(end) = got.iter().position(|b| *b == b'\n') {
            let rest = got.split_off(end + 1);
            return Ok((got, rest, image));
        }
        if got.len() > MAX_LOAD_LINE {
            return Err(std::io::Error::other("the first line is too long"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held child loads only on `go`; a cancellation or the end of the socket ends
    /// it unloaded (exit 0), anything else is a breach of the protocol (exit 2).
    #[test]
    fn a_held_child_loads_only_when_told_go() {
        let wait = |input: &str| wait_for_go(&mut BufReader::new(input.as_bytes()));
        assert_eq!(wait("\"go\"\n"), Ok(()));
        assert_eq!(wait("\"go\""), Ok(()));
        assert_eq!(wait("\"cancel\"\n"), Err(0));
        assert_eq!(wait(""), Err(0));
        assert_eq!(wait("{\"load\":{\"path\":\"/x.so\"}}\n"), Err(2));
        assert_eq!(wait("{\"targets\":{\"id\":1}}\n"), Err(2));
        assert_eq!(wait("go\n"), Err(2));
        // What follows `go` stays for the requests that come after it.
        let mut requests = BufReader::new("\"go\"\n{\"targets\":{\"id\":1}}\n".as_bytes());
        assert_eq!(wait_for_go(&mut requests), Ok(()));
        let mut rest = String::new();
        requests.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "{\"targets\":{\"id\":1}}\n");
    }
}
