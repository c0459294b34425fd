//! The guest-facing `warden:host/amqp` interface.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lapin::Acker;
use lapin::ExchangeKind;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use warden_capability::{AuditSink, CapabilityError, Granted, ModuleGrants};
use wasmtime::component::{Linker, Resource, ResourceTable};

use crate::backend::{AmqpBackend, AmqpBackends, Lease};
use crate::grant::AmqpGrant;
use crate::message::{Properties, check_name};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "warden:host/amqp-capability",
        imports: { default: async | trappable },
        with: {
            "warden:host/types": warden_capability::wit::types,
            "warden:host/amqp.channel": super::ChannelHandle,
            "warden:host/amqp.delivery": super::DeliveryHandle,
        },
    });
}

use bindings::warden::host::amqp::{
    self as wit, ExchangeKind as WitKind, Incoming, Properties as WitProperties, QueueOptions,
};
use warden_capability::wit::types::Error as WitError;

/// Channels one invocation may hold at once (each is a broker resource
/// shared with every other module).
const MAX_CHANNELS_PER_CALL: usize = 4;

/// A module's AMQP grants, resolved when it is loaded.
pub struct AmqpModule {
    grants: ModuleGrants<AmqpGrant, AmqpBackend>,
}

type ModuleGrant = Granted<AmqpGrant, AmqpBackend>;

impl AmqpModule {
    pub fn new(
        module: &str,
        grants: &BTreeMap<String, AmqpGrant>,
        backends: &AmqpBackends,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, String> {
        let grants = ModuleGrants::new(
            module,
            "amqp",
            grants,
            |g| g.backend.as_str(),
            |id| backends.get(id),
            audit,
        )?;
        Ok(Self { grants })
    }

    fn deny(&self, detail: String) -> CapabilityError {
        self.grants.deny(detail)
    }
}

/// Per-invocation AMQP state, kept in the store.
pub struct AmqpCtx {
    module: Arc<AmqpModule>,
    channels: usize,
}

impl AmqpCtx {
    pub fn new(module: Arc<AmqpModule>) -> Self {
        Self {
            module,
            channels: 0,
        }
    }
}

/// The guest's `channel` handle.
pub struct ChannelHandle {
    grant: Arc<ModuleGrant>,
    lease: Arc<Lease>,
}

/// The guest's `delivery` handle.
pub struct DeliveryHandle {
    lease: Arc<Lease>,
    acker: Acker,
    settled: AtomicBool,
}

/// What the `warden:host/amqp` host functions run on.
pub struct AmqpHost<'a> {
    pub ctx: &'a mut AmqpCtx,
    pub table: &'a mut ResourceTable,
}

pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> AmqpHost<'_>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, warden_capability::HostOf<crate::Amqp>>(linker, get)
}

type WitResult<T> = wasmtime::Result<Result<T, WitError>>;

fn properties(p: WitProperties) -> Properties {
    Properties {
        content_type: p.content_type,
        correlation_id: p.correlation_id,
        message_id: p.message_id,
        reply_to: p.reply_to,
        persistent: p.persistent,
        expiration_ms: p.expiration_ms,
        headers: p.headers,
    }
}

fn wit_properties(p: Properties) -> WitProperties {
    WitProperties {
        content_type: p.content_type,
        correlation_id: p.correlation_id,
        message_id: p.message_id,
        reply_to: p.reply_to,
        persistent: p.persistent,
        expiration_ms: p.expiration_ms,
        headers: p.headers,
    }
}

impl AmqpHost<'_> {
    fn module(&self) -> &AmqpModule {
        &self.ctx.module
    }

    /// The handle's grant and lease, after `check` passed against the grant.
    fn checked(
        &self,
        this: &Resource<ChannelHandle>,
        check: impl FnOnce(&ModuleGrant) -> Result<(), CapabilityError>,
    ) -> wasmtime::Result<Result<Arc<Lease>, CapabilityError>> {
        let handle = self.table.get(this)?;
        Ok(check(&handle.grant).map(|()| handle.lease.clone()))
    }

    fn declare_check(
        &self,
        grant: &ModuleGrant,
        what: &str,
        name: &str,
    ) -> Result<(), CapabilityError> {
        check_name(what, name)?;
        if name.is_empty() || !grant.grant.may_declare(name) {
            return Err(self.module().deny(format!(
                "{what} {name:?} is not in grants.amqp.{}.declare",
                grant.name
            )));
        }
        Ok(())
    }
}

impl wit::Host for AmqpHost<'_> {
    async fn open(&mut self, name: String) -> WitResult<Resource<ChannelHandle>> {
        let grant = match self.module().grants.open(&name) {
            Ok(g) => g,
            Err(e) => return Ok(Err(e.into())),
        };
        if self.ctx.channels >= MAX_CHANNELS_PER_CALL {
            return Ok(Err(WitError::LimitExceeded(format!(
                "at most {MAX_CHANNELS_PER_CALL} amqp channels per invocation"
            ))));
        }
        let lease = match grant.backend.lease().await {
            Ok(l) => Arc::new(l),
            Err(e) => return Ok(Err(e.into())),
        };
        self.ctx.channels += 1;
        Ok(Ok(self.table.push(ChannelHandle { grant, lease })?))
    }
}

impl wit::HostChannel for AmqpHost<'_> {
    async fn publish(
        &mut self,
        this: Resource<ChannelHandle>,
        exchange: String,
        routing_key: String,
        payload: Vec<u8>,
        props: WitProperties,
    ) -> WitResult<()> {
        let props = properties(props);
        let lease = match self.checked(&this, |g| {
            check_name("exchange", &exchange)?;
            check_name("routing key", &routing_key)?;
            if !g.grant.may_publish(&exchange, &routing_key) {
                return Err(self.module().deny(format!(
                    "publish to {exchange:?} with routing key {routing_key:?} is not in grants.amqp.{}.publish",
                    g.name
                )));
            }
            props.check(&payload)
        })? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(publish(&lease, &exchange, &routing_key, &payload, &props)
            .await
            .map_err(Into::into))
    }

    async fn declare_exchange(
        &mut self,
        this: Resource<ChannelHandle>,
        name: String,
        kind: WitKind,
        durable: bool,
    ) -> WitResult<()> {
        let lease = match self.checked(&this, |g| self.declare_check(g, "exchange", &name))? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let kind = match kind {
            WitKind::Direct => ExchangeKind::Direct,
            WitKind::Fanout => ExchangeKind::Fanout,
            WitKind::Topic => ExchangeKind::Topic,
            WitKind::Headers => ExchangeKind::Headers,
        };
        let options = ExchangeDeclareOptions {
            durable,
            ..Default::default()
        };
        let result = lease
            .channel()
            .exchange_declare(name.as_str().into(), kind, options, FieldTable::default())
            .await;
        Ok(result.map_err(|e| lease.backend().error("exchange.declare", e).into()))
    }

    async fn declare_queue(
        &mut self,
        this: Resource<ChannelHandle>,
        name: String,
        options: QueueOptions,
    ) -> WitResult<()> {
        let lease = match self.checked(&this, |g| {
            self.declare_check(g, "queue", &name)?;
            // A dead-letter exchange receives messages from this queue: it
            // must be one the module could declare itself.
            match &options.dead_letter_exchange {
                Some(dlx) => self.declare_check(g, "dead-letter exchange", dlx),
                None => Ok(()),
            }
        })? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let mut args = FieldTable::default();
        if let Some(dlx) = &options.dead_letter_exchange {
            args.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(dlx.as_bytes())),
            );
        }
        if let Some(ttl) = options.message_ttl_ms {
            args.insert("x-message-ttl".into(), AMQPValue::LongUInt(ttl));
        }
        if let Some(max) = options.max_length {
            args.insert("x-max-length".into(), AMQPValue::LongUInt(max));
        }
        let declare = QueueDeclareOptions {
            durable: options.durable,
            ..Default::default()
        };
        let result = lease
            .channel()
            .queue_declare(name.as_str().into(), declare, args)
            .await;
        Ok(result
            .map(drop)
            .map_err(|e| lease.backend().error("queue.declare", e).into()))
    }

    async fn bind_queue(
        &mut self,
        this: Resource<ChannelHandle>,
        queue: String,
        exchange: String,
        routing_key: String,
    ) -> WitResult<()> {
        let lease = match self.checked(&this, |g| {
            // Binding routes an exchange's messages into a queue: both ends
            // must be the module's own.
            self.declare_check(g, "queue", &queue)?;
            self.declare_check(g, "exchange", &exchange)?;
            check_name("routing key", &routing_key)
        })? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let result = lease
            .channel()
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await;
        Ok(result.map_err(|e| lease.backend().error("queue.bind", e).into()))
    }

    async fn get(
        &mut self,
        this: Resource<ChannelHandle>,
        queue: String,
    ) -> WitResult<Option<(Incoming, Resource<DeliveryHandle>)>> {
        let lease = match self.checked(&this, |g| {
            check_name("queue", &queue)?;
            if !g.grant.may_consume(&queue) {
                return Err(self.module().deny(format!(
                    "queue {queue:?} is not in grants.amqp.{}.consume",
                    g.name
                )));
            }
            Ok(())
        })? {
            Ok(l) => l,
            Err(e) => return Ok(Err(e.into())),
        };
        let got = lease
            .channel()
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: false })
            .await;
        let message = match got {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(Ok(None)),
            Err(e) => return Ok(Err(lease.backend().error("basic.get", e).into())),
        };
        lease.taken();
        let d = message.delivery;
        let incoming = Incoming {
            exchange: d.exchange.as_str().to_string(),
            routing_key: d.routing_key.as_str().to_string(),
            payload: d.data,
            properties: wit_properties(Properties::from_amqp(&d.properties)),
            redelivered: d.redelivered,
        };
        let handle = self.table.push(DeliveryHandle {
            lease,
            acker: d.acker,
            settled: AtomicBool::new(false),
        })?;
        Ok(Ok(Some((incoming, handle))))
    }

    async fn drop(&mut self, this: Resource<ChannelHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.ctx.channels -= 1;
        Ok(())
    }
}

impl wit::HostDelivery for AmqpHost<'_> {
    async fn ack(&mut self, this: Resource<DeliveryHandle>) -> WitResult<()> {
        let d = self.table.get(&this)?;
        Ok(settle(d, async |a| a.ack(BasicAckOptions::default()).await)
            .await
            .map_err(Into::into))
    }

    async fn nack(&mut self, this: Resource<DeliveryHandle>, requeue: bool) -> WitResult<()> {
        let d = self.table.get(&this)?;
        let options = BasicNackOptions {
            requeue,
            ..Default::default()
        };
        Ok(settle(d, async |a| a.nack(options).await)
            .await
            .map_err(Into::into))
    }

    async fn drop(&mut self, this: Resource<DeliveryHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

async fn settle(
    d: &DeliveryHandle,
    op: impl AsyncFnOnce(&Acker) -> lapin::Result<bool>,
) -> Result<(), CapabilityError> {
    if d.settled.swap(true, Ordering::Relaxed) {
        return Err(CapabilityError::Invalid(
            "this delivery was already acked or nacked".into(),
        ));
    }
    match op(&d.acker).await {
        Ok(_) => {
            d.lease.settled();
            Ok(())
        }
        Err(e) => Err(d.lease.backend().error("settle", e)),
    }
}

/// Publishes on a leased confirm-mode channel and waits for the confirm.
async fn publish(
    lease: &Lease,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    props: &Properties,
) -> Result<(), CapabilityError> {
    lease
        .backend()
        .publish_on(lease.channel(), exchange, routing_key, payload, props)
        .await
}

impl AmqpBackend {
    /// Publishes with `mandatory` set and waits for the broker's confirm: an
    /// unroutable message is an error, not silently dropped.
    pub(crate) async fn publish_on(
        &self,
        channel: &lapin::Channel,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        props: &Properties,
    ) -> Result<(), CapabilityError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let confirm = channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                payload,
                props.to_amqp(),
            )
            .await
            .map_err(|e| self.error("basic.publish", e))?
            .await
            .map_err(|e| self.error("publish confirm", e))?;
        if !confirm.is_ack() {
            return Err(CapabilityError::Backend(format!(
                "amqp backend {}: the broker refused the message (nack)",
                self.id
            )));
        }
        if confirm.take_message().is_some() {
            return Err(CapabilityError::NotFound(format!(
                "no queue is bound to exchange {exchange:?} with routing key {routing_key:?}: the message was returned"
            )));
        }
        self.published();
        Ok(())
    }

    /// Publishes on a pooled channel (dead-lettering, host-side sends).
    pub async fn publish(
        self: &Arc<Self>,
        exchange: &str,
        routing_key: &str,
        payload: &[u8],
        props: &Properties,
    ) -> Result<(), CapabilityError> {
        let lease = self.lease().await?;
        self.publish_on(lease.channel(), exchange, routing_key, payload, props)
            .await
    }
}
