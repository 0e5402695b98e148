//! The read → execute → write loop of one connection.

use std::sync::Arc;

use bytes::BytesMut;
use strata_resp::{Frame, RequestParser};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::cmd;
use crate::{Session, Shared};

/// Bytes read per `read` call at least; the buffer grows for large values.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// Replies buffered before they are written even if more pipelined commands are waiting, so a long
/// pipeline cannot grow the output buffer without bound.
const MAX_PENDING_REPLY_BYTES: usize = 64 * 1024;

/// Serves one client until it quits, breaks the protocol, disconnects, or the service shuts down, then
/// drops its WATCHes.
pub async fn run(
    stream: TcpStream,
    mut session: Session,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    serve_client(stream, &mut session, &shared, shutdown).await;
    session.end_transaction(&shared.keyspace);
}

async fn serve_client(
    mut stream: TcpStream,
    session: &mut Session,
    shared: &Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut parser = RequestParser::new(shared.config.limits);
    let mut input = BytesMut::with_capacity(READ_CHUNK_BYTES);
    let mut output = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        // Run every whole command already buffered, then write all their replies at once.
        loop {
            match parser.parse(&mut input) {
                Ok(Some(args)) => {
                    let reply = cmd::execute(session, shared, &args);
                    reply.encode(session.protocol, &mut output);
                    if session.closing {
                        let _ = stream.write_all(&output).await;
                        return;
                    }
                    if output.len() >= MAX_PENDING_REPLY_BYTES {
                        if stream.write_all(&output).await.is_err() {
                            return;
                        }
                        output.clear();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // Redis replies with the error and closes: the position in the stream is lost.
                    tracing::debug!(client = session.id, error = %e, "protocol error, closing");
                    Frame::error(format!("ERR {e}")).encode(session.protocol, &mut output);
                    let _ = stream.write_all(&output).await;
                    return;
                }
            }
        }
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        if input.capacity() - input.len() < READ_CHUNK_BYTES / 4 {
            input.reserve(READ_CHUNK_BYTES);
        }
        let read = tokio::select! {
            // A connection idle between commands closes at shutdown; one mid-command finishes it first.
            () = shutdown.cancelled(), if !parser.is_mid_request() => return,
            read = stream.read_buf(&mut input) => read,
        };
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Writes one error to a connection that will not be served, then closes it.
pub async fn refuse(mut stream: TcpStream, message: &str) {
    let mut out = BytesMut::new();
    Frame::error(message).encode(strata_resp::ProtocolVersion::Resp2, &mut out);
    let _ = stream.write_all(&out).await;
}
