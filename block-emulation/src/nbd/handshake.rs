//! The fixed newstyle handshake: greeting, client flags and option haggling, up to the
//! export the client chose (or its leaving).

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::proto::{self, BlockSizes, Fatal, OptionRequest};
use super::server::Shared;
use crate::device::BlockDevice;

/// Why a handshake ended without a session.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandshakeError {
    /// The socket failed or closed.
    #[error("connection failed during the handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The client broke the protocol in a way that cannot be answered.
    #[error("{0}")]
    Fatal(#[from] Fatal),
    /// More options than [`super::NbdConfig::max_options`].
    #[error("more than {0} options on one connection")]
    TooManyOptions(u32),
    /// `NBD_OPT_EXPORT_NAME` named an export that cannot be opened (the protocol has no
    /// error reply for it).
    #[error("export {name:?} cannot be opened: {reason}")]
    Export {
        /// The name asked for.
        name: String,
        /// Why not.
        reason: String,
    },
}

/// The outcome of a successful handshake: the export and what was negotiated.
pub(crate) struct Session {
    /// The export's name (the default export's for the empty name).
    pub(crate) name: String,
    /// The device served.
    pub(crate) device: Arc<dyn BlockDevice>,
    /// Structured replies were negotiated.
    pub(crate) structured: bool,
    /// `base:allocation` was selected for this export.
    pub(crate) base_allocation: bool,
    /// The client asked for the block size constraints (`NBD_INFO_BLOCK_SIZE`), so it will
    /// honour them; a client that did not gets byte-granular I/O, as the protocol's defaults
    /// say (a minimum block size of 1).
    pub(crate) block_sizes_agreed: bool,
}

/// Runs the handshake on `stream`. `Ok(None)` when the client aborted or left.
pub(crate) async fn negotiate<S>(
    stream: &mut S,
    shared: &Shared,
) -> Result<Option<Session>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    stream.write_all(&proto::greeting()).await?;
    stream.flush().await?;
    let mut flags = [0u8; 4];
    stream.read_exact(&mut flags).await?;
    let no_zeroes = proto::parse_client_flags(flags)?;

    let mut structured = false;
    // The export name and whether base:allocation was selected by the last SET_META_CONTEXT.
    let mut meta: Option<(String, bool)> = None;
    let mut count = 0u32;
    loop {
        let mut head = [0u8; proto::OPTION_HEADER_LEN];
        match stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let header = proto::parse_option_header(&head)?;
        let option = header.option;
        count += 1;
        if count > config.max_options {
            reply_err(
                stream,
                option,
                proto::REP_ERR_POLICY,
                "too many options on one connection",
            )
            .await?;
            return Err(HandshakeError::TooManyOptions(config.max_options));
        }
        if header.len > config.max_option_len {
            let mut rest = (&mut *stream).take(u64::from(header.len));
            tokio::io::copy(&mut rest, &mut tokio::io::sink()).await?;
            if option == proto::OPT_EXPORT_NAME {
                return Err(HandshakeError::Export {
                    name: String::new(),
                    reason: format!("name of {} bytes is too long", header.len),
                });
            }
            let msg = format!(
                "option data of {} bytes exceeds the {}-byte limit",
                header.len, config.max_option_len
            );
            reply_err(stream, option, proto::REP_ERR_TOO_BIG, &msg).await?;
            continue;
        }
        let mut data = vec![0u8; header.len as usize];
        stream.read_exact(&mut data).await?;
        let request = match proto::parse_option(option, &data) {
            Ok(r) => r,
            Err(e) if option == proto::OPT_EXPORT_NAME => {
                return Err(HandshakeError::Export {
                    name: String::from_utf8_lossy(&data).into_owned(),
                    reason: e.message,
                })
            }
            Err(e) => {
                reply_err(stream, option, e.reply, &e.message).await?;
                continue;
            }
        };
        match request {
            OptionRequest::Abort => {
                // The client may already be gone; its leaving is what it asked for.
                let _ = reply(stream, option, proto::REP_ACK, &[]).await;
                return Ok(None);
            }
            OptionRequest::ExportName(name) => {
                let (name, device) = match open(shared, &name).await {
                    Ok(found) => found,
                    Err(reason) => return Err(HandshakeError::Export { name, reason }),
                };
                let flags = proto::transmission_flags(device.read_only());
                let msg = proto::export_name_reply(device.size(), flags, no_zeroes);
                stream.write_all(&msg).await?;
                stream.flush().await?;
                return Ok(Some(session(name, device, structured, &meta, false)));
            }
            OptionRequest::List => match shared.exports.list().await {
                Ok(list) => {
                    for (name, description) in list {
                        let data = proto::rep_server(&name, &description);
                        reply(stream, option, proto::REP_SERVER, &data).await?;
                    }
                    reply(stream, option, proto::REP_ACK, &[]).await?;
                }
                Err(e) => {
                    let msg = format!("cannot list the exports: {e}");
                    reply_err(stream, option, proto::REP_ERR_POLICY, &msg).await?;
                }
            },
            OptionRequest::StructuredReply => {
                structured = true;
                reply(stream, option, proto::REP_ACK, &[]).await?;
            }
            OptionRequest::Info { go, name, requests } => {
                let (name, device) = match open(shared, &name).await {
                    Ok(found) => found,
                    Err(reason) => {
                        reply_err(stream, option, proto::REP_ERR_UNKNOWN, &reason).await?;
                        continue;
                    }
                };
                let flags = proto::transmission_flags(device.read_only());
                let info = proto::info_export(device.size(), flags);
                reply(stream, option, proto::REP_INFO, &info).await?;
                if requests.contains(&proto::INFO_NAME) {
                    let info = proto::info_string(proto::INFO_NAME, &name);
                    reply(stream, option, proto::REP_INFO, &info).await?;
                }
                if requests.contains(&proto::INFO_DESCRIPTION) {
                    if let Some(description) = describe(shared, &name).await {
                        let info = proto::info_string(proto::INFO_DESCRIPTION, &description);
                        reply(stream, option, proto::REP_INFO, &info).await?;
                    }
                }
                if requests.contains(&proto::INFO_BLOCK_SIZE) {
                    let sizes = BlockSizes::for_device(device.min_io_size(), device.block_size());
                    reply(
                        stream,
                        option,
                        proto::REP_INFO,
                        &proto::info_block_size(sizes),
                    )
                    .await?;
                }
                reply(stream, option, proto::REP_ACK, &[]).await?;
                if go {
                    let agreed = requests.contains(&proto::INFO_BLOCK_SIZE);
                    return Ok(Some(session(name, device, structured, &meta, agreed)));
                }
            }
            OptionRequest::MetaContext { set, name, queries } => {
                if !structured {
                    let msg = "negotiate structured replies before metadata contexts";
                    reply_err(stream, option, proto::REP_ERR_INVALID, msg).await?;
                    continue;
                }
                let name = match open(shared, &name).await {
                    Ok((name, _)) => name,
                    Err(reason) => {
                        reply_err(stream, option, proto::REP_ERR_UNKNOWN, &reason).await?;
                        continue;
                    }
                };
                let selected = proto::match_meta_contexts(&queries, !set);
                if selected {
                    let id = if set { proto::BASE_ALLOCATION_ID } else { 0 };
                    let data = proto::rep_meta_context(id, proto::BASE_ALLOCATION);
                    reply(stream, option, proto::REP_META_CONTEXT, &data).await?;
                }
                reply(stream, option, proto::REP_ACK, &[]).await?;
                if set {
                    meta = Some((name, selected));
                }
            }
            OptionRequest::Unsupported(other) => {
                let msg = format!("option {other} is not supported by this server");
                reply_err(stream, option, proto::REP_ERR_UNSUP, &msg).await?;
            }
        }
    }
}

/// The session for `name`: `base:allocation` counts only if it was selected for this export.
fn session(
    name: String,
    device: Arc<dyn BlockDevice>,
    structured: bool,
    meta: &Option<(String, bool)>,
    block_sizes_agreed: bool,
) -> Session {
    let base_allocation = matches!(meta, Some((n, true)) if *n == name);
    Session {
        name,
        device,
        structured,
        base_allocation,
        block_sizes_agreed,
    }
}

/// Opens the export `name` (the configured default for the empty name). The error is a
/// message for the client.
async fn open(shared: &Shared, name: &str) -> Result<(String, Arc<dyn BlockDevice>), String> {
    let name = if name.is_empty() {
        match &shared.config.default_export {
            Some(default) => default.clone(),
            None => return Err("no default export is configured: give an export name".to_string()),
        }
    } else {
        name.to_string()
    };
    match shared.exports.open(&name).await {
        Ok(device) => Ok((name, device)),
        Err(e) => Err(format!("export {name:?} is not available: {e}")),
    }
}

/// The description `Exports::list` gives for `name`, if any.
async fn describe(shared: &Shared, name: &str) -> Option<String> {
    let list = shared.exports.list().await.ok()?;
    list.into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d)
        .filter(|d| !d.is_empty())
}

async fn reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    option: u32,
    kind: u32,
    data: &[u8],
) -> std::io::Result<()> {
    stream
        .write_all(&proto::option_reply(option, kind, data))
        .await?;
    stream.flush().await
}

async fn reply_err<S: AsyncWrite + Unpin>(
    stream: &mut S,
    option: u32,
    kind: u32,
    message: &str,
) -> std::io::Result<()> {
    let message = proto::truncate_utf8(message, proto::MAX_STRING);
    reply(stream, option, kind, message.as_bytes()).await
}
