//! The AMQP 1.0 transport of server-side subscription (cloud-side spec §2.1–§2.4), on
//! fe2o3-amqp's acceptor (no hand-written framing); TLS is the hub's own rustls acceptor.
//!
//! Per connection: TLS (on the TLS listener), SASL PLAIN with the `aksign` username and
//! password (a wrong one gets SASL outcome `auth`), then one session and one **receiver** link
//! (the hub's sender). A client sender link, or a second link, is detached with
//! `amqp:not-allowed`. Every step before the link must finish within [`ATTACH_TIMEOUT`] (the
//! platform's 15 s). The hub's `idle-time-out` is [`IDLE_TIME_OUT_MS`]; fe2o3 sends empty
//! frames within the client's.
//!
//! Delivery: a message is claimed from the group only when the previous one has been handed to
//! the link, and the link's send waits for credit, so a consumer holds at most one message
//! beyond its credit; each delivery is unsettled until the consumer settles it: `accepted` and
//! `rejected` remove it, `released`/`modified`, the ack timeout and the connection's end put it
//! back in the group ([`super::Consumer`]).
//!
//! Encoding (§2.4, exactly): one Data section with the body bytes, no content-type,
//! application-properties `topic` (string), `messageId` (long), `generateTime` (long ms), `qos`
//! (int), and `properties.message-id` = the same id (ulong).
//!
//! Limits: at most `max_connections` connections at once (more are accepted and closed); each
//! holds fe2o3's bounded channels and one TLS session.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aliot_protocol::subscription::AkSignLogin;
use fe2o3_amqp::acceptor::{
    ConnectionAcceptor, LinkAcceptor, LinkEndpoint, SaslAcceptor, SessionAcceptor,
    sasl_acceptor::SaslServerFrame,
};
use fe2o3_amqp::types::definitions::{AmqpError, Error as AmqpErrorFrame};
use fe2o3_amqp::types::messaging::{
    ApplicationProperties, Data, Message as AmqpMessage, MessageId, Outcome, Properties,
};
use fe2o3_amqp::types::primitives::{Array, Binary, SimpleValue, Symbol};
use fe2o3_amqp::types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::listener::{Limits, Transport, accept_loop};
use super::{Consumer, Message, Settlement, Subscriptions};
use crate::BoxFuture;

/// Time to finish TLS, SASL, the session and the receiver link (the platform's 15 s).
pub(crate) const ATTACH_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a closed connection's last settlements are waited for.
const CLOSE_DRAIN: Duration = Duration::from_secs(2);

/// The hub's `idle-time-out` in its Open frame, ms.
pub(crate) const IDLE_TIME_OUT_MS: u32 = 60_000;

/// The listener's settings.
#[derive(Debug, Clone)]
pub(crate) struct AmqpSettings {
    /// Connections at once, at most.
    pub(crate) max_connections: usize,
    /// How long to wait for the shutdown of the connections.
    pub(crate) shutdown_grace: Duration,
}

/// SASL PLAIN with the `aksign` login; the login that succeeded is left in `login`.
#[derive(Clone)]
struct AkSignSasl {
    subs: Arc<Subscriptions>,
    login: Arc<Mutex<Option<AkSignLogin>>>,
}

impl std::fmt::Debug for AkSignSasl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AkSignSasl")
    }
}

fn outcome(code: SaslCode) -> SaslServerFrame {
    SaslServerFrame::Outcome(SaslOutcome {
        code,
        additional_data: None,
    })
}

impl SaslAcceptor for AkSignSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(vec![Symbol::from("PLAIN")])
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        if init.mechanism.as_str() != "PLAIN" {
            return outcome(SaslCode::Auth);
        }
        let Some(response) = init.initial_response else {
            return outcome(SaslCode::Auth);
        };
        let mut parts = response.split(|b| *b == 0);
        let (_authzid, user, pass) = (parts.next(), parts.next(), parts.next());
        let (Some(user), Some(pass)) = (user, pass) else {
            return outcome(SaslCode::Auth);
        };
        let (Ok(user), Ok(pass)) = (std::str::from_utf8(user), std::str::from_utf8(pass)) else {
            return outcome(SaslCode::Auth);
        };
        match self.subs.login(user, pass) {
            Ok(login) => {
                *self.login.lock().unwrap_or_else(PoisonError::into_inner) = Some(login);
                outcome(SaslCode::Ok)
            }
            Err(e) => {
                info!(error = %e, "AMQP consumer refused");
                outcome(SaslCode::Auth)
            }
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        outcome(SaslCode::Auth)
    }
}

/// Serves AMQP consumers on `listener` (TLS when `tls` is given) until `stop`.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    subs: Arc<Subscriptions>,
    settings: AmqpSettings,
    stop: CancellationToken,
) {
    let limits = Limits {
        max_connections: settings.max_connections,
        handshake_timeout: ATTACH_TIMEOUT,
        shutdown_grace: settings.shutdown_grace,
    };
    accept_loop::<Amqp>(listener, tls, subs, limits, stop).await;
}

/// The AMQP transport for the shared accept loop.
struct Amqp;

impl Transport for Amqp {
    const NAME: &'static str = "AMQP";

    fn connection<Io>(io: Io, subs: Arc<Subscriptions>) -> BoxFuture<'static, Result<(), String>>
    where
        Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
    {
        Box::pin(connection(io, subs))
    }
}

fn not_allowed(why: &str) -> AmqpErrorFrame {
    AmqpErrorFrame::new(AmqpError::NotAllowed, Some(why.to_owned()), None)
}

async fn within<T, E: std::fmt::Display>(
    what: &str,
    f: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(ATTACH_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out")),
    }
}

use std::future::Future;

/// One consumer connection, from SASL to its end.
async fn connection<Io>(io: Io, subs: Arc<Subscriptions>) -> Result<(), String>
where
    Io: AsyncRead + AsyncWrite + std::fmt::Debug + Send + Unpin + 'static,
{
    let login = Arc::new(Mutex::new(None));
    let acceptor = ConnectionAcceptor::builder()
        .container_id("aliot-hub")
        .idle_time_out(IDLE_TIME_OUT_MS)
        .sasl_acceptor(AkSignSasl {
            subs: subs.clone(),
            login: login.clone(),
        })
        .build();
    let mut conn = within("open", acceptor.accept(io)).await?;
    let login = login
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
        .ok_or("no login")?;
    let mut session = within("begin", SessionAcceptor::new().accept(&mut conn)).await?;
    let links: Links = LinkAcceptor::new();
    let sender = match within("attach", links.accept(&mut session)).await? {
        LinkEndpoint::Sender(s) => s,
        LinkEndpoint::Receiver(r) => {
            let _ = r
                .close_with_error(not_allowed("sender links are not supported: attach a receiver"))
                .await;
            let _ = conn.close().await;
            return Err("a sender link".into());
        }
    };
    let consumer = match subs.attach(&login.consumer_group_id, login.clean_session) {
        Ok(c) => c,
        Err(e) => {
            let _ = sender.close_with_error(not_allowed(&e.to_string())).await;
            let _ = conn.close().await;
            return Err(e.to_string());
        }
    };
    info!(client_id = %login.client_id, group = %login.consumer_group_id, "AMQP consumer attached");
    let ack_timeout = subs.settings().ack_timeout;
    let ended = pump(sender, &mut session, &mut conn, &links, consumer, ack_timeout).await;
    let _ = conn.close().await;
    ended
}

type Sender = fe2o3_amqp::Sender;
type Links = LinkAcceptor<
    fn(fe2o3_amqp::types::messaging::Source) -> Option<fe2o3_amqp::types::messaging::Source>,
    fn(fe2o3_amqp::types::messaging::Target) -> Option<fe2o3_amqp::types::messaging::Target>,
>;
type Sent = (
    Sender,
    Arc<Message>,
    Result<DeliveryFut, fe2o3_amqp::link::SendError>,
);
type DeliveryFut = fe2o3_amqp::link::delivery::DeliveryFut<Result<Outcome, fe2o3_amqp::link::SendError>>;

/// The message as the platform encodes it (spec §2.4).
fn encode(m: &Message) -> AmqpMessage<Data> {
    let id = i64::try_from(m.id).unwrap_or(i64::MAX);
    let generate_time = i64::try_from(m.generate_time).unwrap_or(i64::MAX);
    AmqpMessage::builder()
        .properties(Properties::builder().message_id(MessageId::Ulong(m.id)).build())
        .application_properties(
            ApplicationProperties::builder()
                .insert("topic", SimpleValue::String(m.topic.clone()))
                .insert("messageId", SimpleValue::Long(id))
                .insert("generateTime", SimpleValue::Long(generate_time))
                .insert("qos", SimpleValue::Int(i32::from(m.qos)))
                .build(),
        )
        .data(Binary::from(m.body.to_vec()))
        .build()
}

/// What a delivery's end means for the backlog: `accepted` and `rejected` remove it; anything
/// else (`released`, `modified`, the ack timeout, the link gone) puts it back.
fn settlement<E1, E2>(settled: Result<Result<Outcome, E1>, E2>) -> Settlement {
    match settled {
        Ok(Ok(Outcome::Accepted(_))) => Settlement::Accepted,
        Ok(Ok(Outcome::Rejected(_))) => Settlement::Rejected,
        _ => Settlement::Released,
    }
}

/// Moves messages from the group to the link within its credit, and settlements back, until
/// the link, the session or the connection ends.
async fn pump(
    sender: Sender,
    session: &mut fe2o3_amqp::acceptor::ListenerSessionHandle,
    conn: &mut fe2o3_amqp::acceptor::ListenerConnectionHandle,
    links: &Links,
    consumer: Consumer,
    ack_timeout: Duration,
) -> Result<(), String> {
    let mut idle = Some(sender);
    let mut sending: Option<BoxFuture<'static, Sent>> = None;
    let mut inflight = FuturesUnordered::new();
    loop {
        tokio::select! {
            Some((id, settled)) = inflight.next(), if !inflight.is_empty() => {
                consumer.settle(id, settlement(settled));
            }
            m = consumer.next(), if idle.is_some() => {
                let Some(m) = m else { return Err("consumer group deleted".into()) };
                if let Some(mut s) = idle.take() {
                    sending = Some(Box::pin(async move {
                        let r = s.send_batchable(encode(&m)).await;
                        (s, m, r)
                    }));
                }
            }
            (s, m, r) = async { match sending.as_mut() { Some(f) => f.await, None => std::future::pending().await } } => {
                sending = None;
                match r {
                    Ok(fut) => {
                        idle = Some(s);
                        let id = m.id;
                        inflight.push(async move { (id, tokio::time::timeout(ack_timeout, fut).await) });
                    }
                    Err(e) => {
                        consumer.settle(m.id, Settlement::Released);
                        return Err(format!("send: {e}"));
                    }
                }
            }
            attach = session.next_incoming_attach() => {
                let Some(attach) = attach else { return Ok(()) };
                // One receiver link per connection (spec §2.1).
                match links.accept_incoming_attach(attach, session).await {
                    Ok(LinkEndpoint::Sender(s)) => {
                        let _ = s.close_with_error(not_allowed("one receiver link per connection")).await;
                    }
                    Ok(LinkEndpoint::Receiver(r)) => {
                        let _ = r.close_with_error(not_allowed("sender links are not supported")).await;
                    }
                    Err(e) => debug!(error = %e, "second link refused"),
                }
            }
            closed = conn.on_close() => {
                // Dispositions that came in just before the close count: the session task may
                // still be handing them over, and every delivery resolves (outcome, or an
                // error once the session is gone) soon after the close; bounded anyway.
                let drain = async {
                    while let Some((id, settled)) = inflight.next().await {
                        consumer.settle(id, settlement(settled));
                    }
                };
                let _ = tokio::time::timeout(CLOSE_DRAIN, drain).await;
                return closed.map_err(|e| e.to_string());
            }
        }
    }
}
