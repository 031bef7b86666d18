//! Running a plugin's exports: fresh instances from the pre-instance, the instance kept
//! across the commands of a log entry, the warm pool for `route` and `render`, the gate
//! that keeps instance slots for the write path, per-call limits, and the classification
//! of what went wrong.
//!
//! Owns: every call into wasm. Each export has one method on [`LoadedPlugin`]; an `apply`
//! runs on the write transaction's tables, lent to the instance for the call, under a
//! savepoint that is rolled back unless the command returns `ok`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use wasmtime::{Store, Trap};

use super::engine::INSTANCE_POOL;
use super::host::{self, Access, HostState, Sent};
use super::load::Command;
use super::{
    CallError, ErrorKind, HttpPlan, HttpRequest, HttpResponse, LoadedPlugin, bindings, wit,
    wit_guest,
};
use crate::state::{IndexKeys, ReadTxn, WriteTxn};

/// Instances kept warm per plugin for `route` and `render`.
const WARM_INSTANCES: usize = 4;

/// A warm instance whose memory grew past this is retired rather than kept.
const WARM_MAX_MEMORY: usize = 8 << 20;

/// An instance kept for `route` and `render`, with the gate slot it holds while it lives.
pub(super) struct Warm {
    inst: Instance,
    _slot: GateSlot,
}

/// A live instance of a plugin, in its own wasmtime store.
///
/// Outside this module it is the instance kept for the commands of one log entry
/// ([`LoadedPlugin::apply_kept`]); it cannot be used with another plugin than the one that
/// made it.
pub struct Instance {
    store: Store<HostState>,
    instance: bindings::Plugin,
    /// The pre-instance it came from: which plugin it belongs to.
    pre: Arc<bindings::PluginPre<HostState>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.store.data().plugin)
            .finish()
    }
}

/// Instance slots kept free of reads, so the serial write path always finds one.
const RESERVED_FOR_APPLY: u32 = 8;

/// Counts calls other than `apply` in flight; refuses one beyond the pool's share for them.
#[derive(Clone, Default)]
pub(super) struct CallGate(Arc<AtomicU32>);

/// A slot taken from a [`CallGate`]; released on drop.
struct GateSlot(Arc<AtomicU32>);

impl CallGate {
    fn enter(&self) -> Option<GateSlot> {
        let max = INSTANCE_POOL - RESERVED_FOR_APPLY;
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| GateSlot(self.0.clone()))
    }
}

impl Drop for GateSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl LoadedPlugin {
    /// A fresh instance, in a store of its own with fuel and memory limits, whose calls
    /// see `access`.
    fn instantiate(&self, call: &str, access: Access) -> Result<Instance, CallError> {
        self.instantiate_or_return(call, access)
            .map_err(|refused| refused.0)
    }

    /// [`LoadedPlugin::instantiate`], which hands `access` back when it fails (the tables a
    /// write transaction lent).
    fn instantiate_or_return(
        &self,
        call: &str,
        access: Access,
    ) -> Result<Instance, Box<(CallError, Access)>> {
        let state = HostState::new(
            &self.description.name,
            self.declared.clone(),
            access,
            &self.limits,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Instantiation (the component's start code) burns the call's fuel too.
        match store
            .set_fuel(self.limits.fuel)
            .and_then(|()| self.pre.instantiate(&mut store))
        {
            Ok(instance) => Ok(Instance {
                store,
                instance,
                pre: self.pre.clone(),
            }),
            Err(e) => {
                let error = self.instantiate_error(call, store.data(), e);
                Err(Box::new((error, store.into_data().access)))
            }
        }
    }

    /// Readies a kept instance for its next call: full budgets (fuel, host work, writes),
    /// no error or reads left from the last one. (A fresh instance starts so.)
    fn refill(&self, inst: &mut Instance) {
        inst.store.data_mut().reset(&self.limits);
        // Fuel is on in every engine this runtime builds, so this cannot fail.
        let _ = inst.store.set_fuel(self.limits.fuel);
    }

    /// Runs one export on `inst` (fresh, or refilled); returns the fuel it used with the
    /// result. A used-up budget fails the call whatever the plugin did with the error it
    /// got.
    fn run<R>(
        &self,
        call: &str,
        inst: &mut Instance,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> (u64, Result<R, CallError>) {
        let result = f(inst.instance.fsmhost_plugin_guest(), &mut inst.store)
            .map_err(|e| self.classify(call, inst.store.data(), e));
        let result = match inst.store.data().exceeded {
            Some(which) => Err(self.budget_error(call, which)),
            None => result,
        };
        let fuel_used = self
            .limits
            .fuel
            .saturating_sub(inst.store.get_fuel().unwrap_or(0));
        (fuel_used, result)
    }

    /// Runs one export in a fresh instance; returns its result with the store's final host
    /// state (what the call read).
    fn call_fresh<R>(
        &self,
        call: &str,
        access: Access,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, HostState), CallError> {
        let mut inst = self.instantiate(call, access)?;
        let (_, result) = self.run(call, &mut inst, f);
        result.map(|r| (r, inst.store.into_data()))
    }

    fn budget_error(&self, call: &str, which: host::Exceeded) -> CallError {
        let budget = match which {
            host::Exceeded::HostWork => {
                format!("host-work budget of {} fuel units", self.limits.fuel)
            }
            host::Exceeded::Writes => format!("write budget of {} bytes", self.limits.write_bytes),
        };
        CallError::BudgetExceeded {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            budget,
        }
    }

    /// Instantiation failures: a trap or an oversized initial memory is the component's own
    /// (deterministic); anything else (an exhausted pool) is this server's problem.
    fn instantiate_error(&self, call: &str, state: &HostState, e: wasmtime::Error) -> CallError {
        if state.limiter.denied.is_some() || e.downcast_ref::<Trap>().is_some() {
            return self.classify(call, state, e);
        }
        CallError::Unavailable {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            reason: format!("{e:#}"),
        }
    }

    /// Runs a call that is not `apply` through the gate that keeps slots for writes; returns
    /// its result and the tables it read.
    fn gated_call<R>(
        &self,
        call: &str,
        access: Access,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<(R, BTreeSet<String>), CallError> {
        let _slot = self.enter_gate(call)?;
        self.call_fresh(call, access, f)
            .map(|(r, state)| (r, state.read_set))
    }

    /// A slot for a call other than `apply`, or `Unavailable` when every such slot is taken.
    fn enter_gate(&self, call: &str) -> Result<GateSlot, CallError> {
        self.gate.enter().ok_or_else(|| CallError::Unavailable {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            reason: format!(
                "{} plugin calls are already running",
                INSTANCE_POOL - RESERVED_FOR_APPLY
            ),
        })
    }

    /// Runs a pure call (`route`, `render`) on a warm instance, or a new one that is kept
    /// afterwards if there is room; an instance that trapped, ran out of a budget or grew its
    /// memory past [`WARM_MAX_MEMORY`] is dropped.
    fn warm_call<R>(
        &self,
        call: &str,
        permits: Option<&super::Permits>,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        let kept = self.warm.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut warm = match kept {
            Some(mut w) => {
                self.refill(&mut w.inst);
                w
            }
            None => {
                let slot = self.enter_gate(call)?;
                Warm {
                    inst: self.instantiate(call, Access::None)?,
                    _slot: slot,
                }
            }
        };
        warm.inst.store.data_mut().permits = permits.cloned();
        let (_, result) = self.run(call, &mut warm.inst, f);
        warm.inst.store.data_mut().permits = None;
        if result.is_ok() && warm.inst.store.data().limiter.memory_size <= WARM_MAX_MEMORY {
            let mut pool = self.warm.lock().unwrap_or_else(|p| p.into_inner());
            if pool.len() < WARM_INSTANCES {
                pool.push(warm);
            }
        }
        result
    }

    pub(super) fn call<R>(
        &self,
        call: &str,
        access: Access,
        f: impl FnOnce(&wit_guest::Guest, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        self.call_fresh(call, access, f).map(|(r, _)| r)
    }

    fn classify(&self, call: &str, state: &HostState, e: wasmtime::Error) -> CallError {
        let plugin = self.description.name.clone();
        let call = call.to_string();
        if let Some(requested) = state.limiter.denied {
            return CallError::MemoryExhausted {
                plugin,
                call,
                limit: self.limits.memory_bytes,
                requested,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => CallError::FuelExhausted {
                plugin,
                call,
                limit: self.limits.fuel,
            },
            Some(Trap::UnreachableCodeReached) => CallError::Trap {
                plugin,
                call,
                trap: match &state.panic_message {
                    Some(m) => format!("the plugin {m}"),
                    None => "the plugin panicked (wasm `unreachable` instruction executed)".into(),
                },
            },
            Some(t) => CallError::Trap {
                plugin,
                call,
                trap: t.to_string().trim_start_matches("wasm trap: ").to_string(),
            },
            None => CallError::Trap {
                plugin,
                call,
                trap: format!("{e:#}"),
            },
        }
    }

    fn plugin_error(&self, call: &str, e: wit::PluginError) -> CallError {
        CallError::Plugin {
            plugin: self.description.name.clone(),
            call: call.to_string(),
            kind: e.kind.into(),
            message: e.message,
        }
    }

    /// Runs `command` in `txn` in a fresh instance. On `Ok` the command's writes are in
    /// `txn`; on any error (the plugin's own, a trap, fuel or memory exhaustion) `txn` is
    /// exactly as it was. Messages it sends are not delivered (the FSM delivers them:
    /// `fsm::EntryTxn::apply`).
    pub fn apply(
        &self,
        txn: &mut WriteTxn<'_>,
        command: &str,
        payload: &[u8],
        timestamp_ms: u64,
    ) -> Result<Vec<u8>, CallError> {
        self.apply_kept(
            &mut None,
            txn,
            command,
            payload,
            timestamp_ms,
            &mut Vec::new(),
        )
    }

    /// [`LoadedPlugin::apply`] on the instance in `kept` (a fresh one when it is empty or
    /// belongs to another plugin), which is left in `kept` for the next command unless the
    /// call trapped or used up a budget (a refusal by the plugin keeps it).
    ///
    /// Determinism: a kept instance carries the guest's heap and statics from one command
    /// to the next, and so changes the fuel the next one burns. The caller keeps one only
    /// across the commands of one log entry, in log order, starting empty: every server,
    /// and a server replaying its log, then runs each command on the same instance history.
    ///
    /// The messages a command that returns `Ok` sent are appended to `sent`, in order, for
    /// the caller to deliver.
    pub fn apply_kept(
        &self,
        kept: &mut Option<Instance>,
        txn: &mut WriteTxn<'_>,
        command: &str,
        payload: &[u8],
        timestamp_ms: u64,
        sent: &mut Vec<Sent>,
    ) -> Result<Vec<u8>, CallError> {
        let Some(at) = self.description.commands.iter().position(|c| c == command) else {
            return Err(CallError::UnknownCommand {
                plugin: self.description.name.clone(),
                command: command.to_string(),
            });
        };
        let Command { call, metrics } = &self.commands[at];
        let index = txn.stamp();
        let savepoint = txn.savepoint();
        let access = Access::Write {
            tables: txn.lend(),
            index,
        };
        let ctx = wit::ApplyContext {
            index,
            timestamp_ms,
        };
        let started = std::time::Instant::now();
        let mut inst = match kept.take() {
            Some(mut inst) if Arc::ptr_eq(&inst.pre, &self.pre) => {
                self.refill(&mut inst);
                inst.store.data_mut().access = access;
                inst
            }
            _ => match self.instantiate_or_return(call, access) {
                Ok(inst) => inst,
                Err(refused) => {
                    let (e, access) = *refused;
                    give_back(txn, access);
                    txn.rollback_to(savepoint);
                    return Err(e);
                }
            },
        };
        let (fuel, result) = self.run(call, &mut inst, |g, s| {
            g.call_apply(s, command, payload, ctx)
        });
        give_back(
            txn,
            std::mem::replace(&mut inst.store.data_mut().access, Access::None),
        );
        let outbox = std::mem::take(&mut inst.store.data_mut().outbox);
        let outcome = match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(self.plugin_error(call, e)),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => {
                txn.release(savepoint);
                sent.extend(outbox);
            }
            Err(_) => txn.rollback_to(savepoint),
        }
        if matches!(outcome, Ok(_) | Err(CallError::Plugin { .. })) {
            *kept = Some(inst);
        }
        metrics
            .get_or_init(|| crate::metrics::METRICS.command(&self.description.name, command))
            .record(started.elapsed(), fuel, outcome.is_ok());
        outcome
    }

    /// Runs the read-only query `name` against `txn`; returns its result bytes.
    pub fn query(&self, txn: &ReadTxn, name: &str, args: &[u8]) -> Result<Vec<u8>, CallError> {
        self.query_with_reads(txn, name, args).map(|(out, _)| out)
    }

    /// Runs the read-only query `name` against `txn`; returns its result bytes and the tables
    /// it read (what a blocking query must watch).
    pub fn query_with_reads(
        &self,
        txn: &ReadTxn,
        name: &str,
        args: &[u8],
    ) -> Result<(Vec<u8>, BTreeSet<String>), CallError> {
        if !self.description.queries.iter().any(|q| q == name) {
            return Err(CallError::UnknownQuery {
                plugin: self.description.name.clone(),
                query: name.to_string(),
            });
        }
        let call = format!("query {name}");
        let (out, reads) = self.gated_call(&call, Access::Read(txn.clone()), |g, s| {
            g.call_query(s, name, args)
        })?;
        out.map(|bytes| (bytes, reads))
            .map_err(|e| self.plugin_error(&call, e))
    }

    /// The plugin's leader timer (the `tick` export), read-only on `txn`: the commands
    /// (name, payload) it asks the leader to propose.
    pub fn tick(
        &self,
        txn: &ReadTxn,
        ctx: &fsmhost_guest::TickCtx,
    ) -> Result<Vec<(String, Vec<u8>)>, CallError> {
        let call = "tick";
        let ctx = wit::TickContext::from(ctx);
        let out = self
            .gated_call(call, Access::Read(txn.clone()), |g, s| g.call_tick(s, &ctx))?
            .0
            .map_err(|e| self.plugin_error(call, e))?;
        Ok(out.into_iter().map(|c| (c.name, c.input)).collect())
    }

    /// Every index key of an encoded object of `table` (restores, index rebuilds).
    pub fn index(&self, table: &str, object: &[u8]) -> Result<Vec<IndexKeys>, CallError> {
        let call = format!("index of table {table}");
        let keys = self
            .gated_call(&call, Access::None, |g, s| g.call_index(s, table, object))?
            .0
            .map_err(|e| self.plugin_error(&call, e))?;
        Ok(keys.into_iter().map(IndexKeys::from).collect())
    }

    /// Rewrites one object an older version stored in `table` at layout `from_layout` (the
    /// `migrate` export): the `(table, object)` pairs to store in its place, none to drop
    /// it. Runs outside any transaction with the per-call limits of a command.
    pub fn migrate(
        &self,
        table: &str,
        from_layout: u32,
        object: &[u8],
    ) -> Result<Vec<(String, Vec<u8>)>, CallError> {
        let call = format!("migrate of table {table} from layout {from_layout}");
        let out = self
            .gated_call(&call, Access::None, |g, s| {
                g.call_migrate(s, table, from_layout, object)
            })?
            .0
            .map_err(|e| self.plugin_error(&call, e))?;
        Ok(out.into_iter().map(|o| (o.table, o.object)).collect())
    }

    /// The key (or key prefix) for encoded query arguments of `table.index`.
    pub fn index_args(
        &self,
        table: &str,
        index: &str,
        args: &[u8],
        prefix: bool,
    ) -> Result<Vec<u8>, CallError> {
        let call = format!("index-args of {table}.{index}");
        self.gated_call(&call, Access::None, |g, s| {
            g.call_index_args(s, table, index, args, prefix)
        })?
        .0
        .map_err(|e| self.plugin_error(&call, e))
    }
}

impl LoadedPlugin {
    /// Plans a request on one of the plugin's routes (the `route` export), outside any
    /// transaction, for a caller with `permits`.
    pub fn route(
        &self,
        req: &HttpRequest,
        permits: &super::Permits,
    ) -> Result<HttpPlan, CallError> {
        let call = format!("route {} {}", req.method, req.path);
        let wreq = wit::HttpRequest::from(req);
        let plan = self.warm_call(&call, Some(permits), |g, s| g.call_route(s, &wreq))?;
        Ok(HttpPlan::from(plan))
    }

    /// Renders the outcome of a plan (the `render` export): the result bytes, or the
    /// plugin's own error; `index` is the outcome's index; `permits` the caller's.
    pub fn render(
        &self,
        context: &[u8],
        outcome: Result<&[u8], (ErrorKind, &str)>,
        index: u64,
        permits: &super::Permits,
    ) -> Result<HttpResponse, CallError> {
        let outcome = outcome
            .map(<[u8]>::to_vec)
            .map_err(|(kind, message)| wit::PluginError {
                kind: kind.into(),
                message: message.to_string(),
            });
        let r = self.warm_call("render", Some(permits), |g, s| {
            g.call_render(s, context, outcome.as_deref(), index)
        })?;
        Ok(HttpResponse::from(r))
    }
}

/// Hands the tables of a write call's `access` back to `txn`.
fn give_back(txn: &mut WriteTxn<'_>, access: Access) {
    if let Access::Write { tables, .. } = access {
        txn.give_back(tables);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_keeps_slots_for_apply() {
        let gate = CallGate::default();
        let held: Vec<GateSlot> = (0..INSTANCE_POOL - RESERVED_FOR_APPLY)
            .map(|_| gate.enter().expect("a free slot"))
            .collect();
        assert!(
            gate.enter().is_none(),
            "reads cannot take the reserved slots"
        );
        drop(held);
        assert!(gate.enter().is_some(), "slots come back when calls end");
    }
}
