//! What a store holds for one invocation of one module.

use std::sync::Arc;

use warden_amqp::{AmqpCtx, AmqpHost, AmqpView};
use warden_events::{EventsModule, EventsView};
use warden_kafka::{KafkaCtx, KafkaHost, KafkaView};
use warden_kv::{KvCtx, KvHost, KvView};
use warden_net::{GrantedHttpHooks, NetPolicy, NetView};
use warden_sql::{SqlCtx, SqlHost, SqlView};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_config::WasiConfigVariables;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::limits::Limiter;

pub struct ModuleState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) http_hooks: GrantedHttpHooks,
    pub(crate) config: Arc<WasiConfigVariables>,
    pub(crate) net: Arc<NetPolicy>,
    pub(crate) limiter: Limiter,
    pub(crate) sql: SqlCtx,
    pub(crate) kv: KvCtx,
    pub(crate) kafka: KafkaCtx,
    pub(crate) amqp: AmqpCtx,
    pub(crate) events: Arc<EventsModule>,
    /// Denials of this invocation, for `max-denials` (see `module::Denials`).
    pub(crate) denials: Arc<std::sync::atomic::AtomicU32>,
}

impl WasiView for ModuleState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ModuleState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl NetView for ModuleState {
    fn net_policy(&self) -> Arc<NetPolicy> {
        self.net.clone()
    }
}

impl SqlView for ModuleState {
    fn sql(&mut self) -> SqlHost<'_> {
        SqlHost {
            ctx: &mut self.sql,
            table: &mut self.table,
        }
    }
}

impl KvView for ModuleState {
    fn kv(&mut self) -> KvHost<'_> {
        KvHost {
            ctx: &mut self.kv,
            table: &mut self.table,
        }
    }
}

impl KafkaView for ModuleState {
    fn kafka(&mut self) -> KafkaHost<'_> {
        KafkaHost {
            ctx: &mut self.kafka,
            table: &mut self.table,
        }
    }
}

impl AmqpView for ModuleState {
    fn amqp(&mut self) -> AmqpHost<'_> {
        AmqpHost {
            ctx: &mut self.amqp,
            table: &mut self.table,
        }
    }
}

impl EventsView for ModuleState {
    fn events(&mut self) -> &EventsModule {
        &self.events
    }
}
