//! Root context: load the policy and the MAC key (refuse to start without either), start this
//! VM's chain, and deliver its records to the collector.
//!
//! # Queue, chain and delivery
//!
//! Envoy cancels a request context's outstanding `dispatch_http_call` when the request ends, so
//! requests never send; each request's record goes into a proxy-wasm shared queue at `on_log`
//! (which Envoy calls for aborted requests too) and the root context sends.
//!
//! A shared queue is keyed by (vm_id, name) across the whole Envoy: every worker VM of this
//! plugin shares one namespace. Any VM may dequeue from any queue whose token it holds, and only
//! the last VM that registered a name receives `on_queue_ready` for it (proxy-wasm-cpp-host
//! `SharedQueue::registerQueue` overwrites the owner; `enqueue` posts `onQueueReady` to the
//! owner's thread). One queue for all workers would therefore let another VM's root context take
//! this VM's records, and a chain needs a single writer for contiguous seqs and in-order delivery.
//!
//! So **each VM registers its own queue, named after its chain id**
//! (`hipaa.audit.records.<chain id>`), and only its own root context — the one notified, and
//! the only one that knows the name — dequeues. Its HTTP contexts (same VM, same thread, one
//! callback at a time) seal each record at `on_log` into the VM's chain, straight from the typed
//! record (`ChainWriter::seal_to_json`: one canonical write, the HMAC, the hash; no JSON round
//! trip), and enqueue the sealed bytes: seqs are contiguous in the order of the calls, and the
//! queue keeps that order. The root context takes records in order, keeps at most two batches in
//! the VM, and sends one batch at a time, retrying the same batch until the collector answers
//! 2xx (`hipaa_core::audit::delivery`). Records wait in the host's queue, outside the VM's
//! memory, while the collector is down. If registering the queue (or an enqueue) fails,
//! records wait in a VM-local list instead, behind those in the queue (same order).
//!
//! `maxBuffered` counts records per Envoy: a shared-data count (compare-and-swap) goes up when a
//! request enqueues and down when the collector acknowledges; `hipaa_core::audit::buffer` decides
//! admission from it.
//!
//! The chain id is 128 bits of SHA-256 over the host clock in nanoseconds, this root context's id,
//! a shared-data counter incremented with compare-and-swap (unique per VM start within an
//! Envoy) and a host-seeded hash: unique per VM without a randomness dependency.

use crate::host;
use crate::http::{AuditHttp, UnconfiguredHttp};
use hipaa_core::audit::buffer::WorkerCount;
use hipaa_core::audit::build::chain_id_from_seed;
use hipaa_core::audit::delivery::{Answer, Delivery, DeliveryConfig, DONE_DEADLINE_MS};
use hipaa_core::audit::{AuditError, AuditRecord, ChainWriter, MacKeyRing};
use hipaa_core::policy::{Audit, Policy};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, MapType};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::hash::BuildHasher;
use std::rc::Rc;
use std::time::Duration;

/// Records kept in the VM before the host's queue takes them: this many batches (`maxBatch`).
const LOCAL_BATCHES: usize = 2;

/// What the root context shares with the HTTP contexts of its VM.
pub struct Shared {
    pub policy: Rc<Policy>,
    pub audit: Audit,
    /// This VM's chain: requests seal their records into it as they log them.
    chain: RefCell<ChainWriter>,
    /// Sealed records kept in the VM, in front of the queue, while few wait: at most
    /// `local_max`, and only while the queue and the fallback list are empty, so every record
    /// here precedes every record there. Putting a record in the host's queue makes Envoy post
    /// an `on_queue_ready` callback to this worker for each one (another entry into the VM and
    /// a dequeue host call per request); kept here, the records are taken at the next tick.
    /// The queue still takes them once more wait (the collector slow or down), outside the
    /// VM's memory as before.
    local: RefCell<VecDeque<Vec<u8>>>,
    local_max: usize,
    /// This VM's queue; None if the host refused to register it.
    queue: Option<u32>,
    /// Records in the queue (this VM is its only producer and consumer): no dequeue call is
    /// made to find it empty.
    queued: Cell<usize>,
    /// Sealed records waiting when there is no queue (or the host refused an enqueue). Every
    /// record in the host queue precedes every record here (a record goes to the queue only
    /// while this list is empty, and [`Shared::take`] empties the queue first), so records
    /// leave in seq order.
    fallback: RefCell<VecDeque<Vec<u8>>>,
    /// This worker's view of the Envoy-wide buffered count (`buffer::WorkerCount`).
    count: RefCell<WorkerCount>,
}

impl Shared {
    /// The Envoy-wide buffered count for admission: read from the host near `maxBuffered`,
    /// else this worker's view (no host call).
    pub fn buffered(&self) -> u64 {
        let Ok(mut count) = self.count.try_borrow_mut() else {
            return host::buffered();
        };
        if count.exact() {
            Self::share(&mut count);
        }
        count.estimate()
    }

    /// Adds `delta` to the buffered count (shared with the other workers when due); the count
    /// after it, as this worker knows it.
    pub fn add_buffered(&self, delta: i64) -> u64 {
        let Ok(mut count) = self.count.try_borrow_mut() else {
            return host::adjust_shared(host::BUFFERED_KEY, delta).unwrap_or(0);
        };
        if count.add(delta) {
            Self::share(&mut count);
        }
        count.estimate()
    }

    /// Shares this worker's gathered changes (or reads the count if there are none): every
    /// tick, and before the VM stops.
    pub fn share_buffered(&self) {
        if let Ok(mut count) = self.count.try_borrow_mut() {
            Self::share(&mut count);
        }
    }

    fn share(count: &mut WorkerCount) {
        let delta = count.take_unshared();
        let updated = if delta == 0 {
            Some(host::buffered())
        } else {
            host::adjust_shared(host::BUFFERED_KEY, delta)
        };
        match updated {
            Some(shared) => count.shared(shared),
            None => count.unshared_again(delta),
        }
    }

    /// Seals an `access` record with the next seq of this VM's chain and hands it to the root
    /// context.
    pub fn seal_and_enqueue(&self, record: AuditRecord) -> Result<(), AuditError> {
        let sealed = self.chain.borrow_mut().seal_to_json(record)?;
        let mut fallback = self.fallback.borrow_mut();
        if self.queued.get() == 0 && fallback.is_empty() {
            let mut local = self.local.borrow_mut();
            if local.len() < self.local_max {
                local.push_back(sealed);
                return Ok(());
            }
        }
        if fallback.is_empty() {
            if let Some(queue) = self.queue {
                if hostcalls::enqueue_shared_queue(queue, Some(&sealed)).is_ok() {
                    self.queued.set(self.queued.get() + 1);
                    return Ok(());
                }
            }
        }
        fallback.push_back(sealed);
        Ok(())
    }

    /// The next sealed record, in seq order.
    fn take(&self) -> Option<Vec<u8>> {
        if let Some(record) = self.local.borrow_mut().pop_front() {
            return Some(record);
        }
        if let (Some(queue), true) = (self.queue, self.queued.get() > 0) {
            match hostcalls::dequeue_shared_queue(queue) {
                Ok(Some(record)) => {
                    self.queued.set(self.queued.get() - 1);
                    return Some(record);
                }
                // Empty after all: the count follows the host.
                Ok(None) => self.queued.set(0),
                // Try again later rather than take a later record from the fallback list first.
                Err(_) => return None,
            }
        }
        self.fallback.borrow_mut().pop_front()
    }

    /// Records handed over and not yet taken (when the VM stops), removed.
    fn discard_waiting(&self) -> usize {
        let mut n = 0;
        while self.take().is_some() {
            n += 1;
        }
        n
    }
}

pub struct AuditRoot {
    context_id: u32,
    shared: Option<Rc<Shared>>,
    delivery: Option<Delivery>,
    /// The token of the call in flight.
    token: Option<u32>,
    /// The `chain-start` record is not in the shared buffered count (Envoy starts and drops
    /// VMs, e.g. the one that validates the configuration, whose chain-start is never sent and
    /// must not hold buffer space); its batch is acknowledged with one record less.
    start_unacked: bool,
    /// Set when the host asked this root context to finish (`on_done`: its configuration was
    /// replaced, or the VM stops): delivery goes on until everything is acknowledged or this
    /// time (Unix ms) passes, then the context tells the host it is done.
    done_by: Option<i64>,
    /// Unacknowledged records already taken out of the shared buffered count when the host
    /// asked this context to finish (the oldest ones; a VM that goes away with them must not
    /// leave them in the Envoy-wide count): not taken out again when they settle.
    precounted: usize,
}

impl AuditRoot {
    pub fn new(context_id: u32) -> AuditRoot {
        AuditRoot {
            context_id,
            shared: None,
            delivery: None,
            token: None,
            start_unacked: false,
            done_by: None,
            precounted: 0,
        }
    }

    /// Takes a parsed policy (the combined root parses it once for every stage), loads the
    /// record-MAC key and starts this VM's chain; the tick period delivery needs, or None (with
    /// one log line) when the policy has no `spec.audit` or the key is unusable.
    pub fn configure(&mut self, policy: Rc<Policy>) -> Option<Duration> {
        let Some(audit) = policy.spec.audit.clone() else {
            log::error!("hipaa-audit: spec.audit: required by the audit filter (collector, flushIntervalMs, maxBatch, maxBuffered, whenCollectorDown, macKeyEnv)");
            return None;
        };
        let key = match std::env::var(&audit.mac_key_env) {
            Ok(text) => match MacKeyRing::parse(&text) {
                Ok(ring) => ring.current().clone(),
                Err(e) => {
                    log::error!(
                        "hipaa-audit: {} (named by spec.audit.macKeyEnv): {e}",
                        audit.mac_key_env
                    );
                    return None;
                }
            },
            Err(_) => {
                log::error!(
                    "hipaa-audit: the record-MAC key variable {} (spec.audit.macKeyEnv) is not set for the Wasm VM; pass it with vm_config.environment_variables",
                    audit.mac_key_env
                );
                return None;
            }
        };
        host::define_counters();
        if self.shared.is_none() {
            let chain_id = self.chain_id();
            let queue =
                hostcalls::register_shared_queue(&format!("hipaa.audit.records.{chain_id}")).ok();
            if queue.is_none() {
                log::warn!(
                    "hipaa-audit: could not register the record queue; records wait in the VM"
                );
            }
            let now = host::now_millis();
            let (writer, start) = match ChainWriter::start(chain_id.clone(), key, now) {
                Ok(pair) => pair,
                Err(e) => {
                    log::error!("hipaa-audit: cannot start the chain: {e}");
                    return None;
                }
            };
            let start_json = match serde_json::to_vec(&start) {
                Ok(json) => json,
                Err(e) => {
                    log::error!("hipaa-audit: cannot serialize the chain-start record: {e}");
                    return None;
                }
            };
            let mut delivery = Delivery::new(DeliveryConfig::from_policy(&audit));
            delivery.push(start_json, now);
            self.start_unacked = true;
            self.delivery = Some(delivery);
            self.shared = Some(Rc::new(Shared {
                policy,
                audit: audit.clone(),
                chain: RefCell::new(writer),
                local: RefCell::new(VecDeque::new()),
                local_max: LOCAL_BATCHES.saturating_mul(audit.max_batch as usize),
                queue,
                queued: Cell::new(0),
                fallback: RefCell::new(VecDeque::new()),
                count: RefCell::new(WorkerCount::new(u64::from(audit.max_buffered))),
            }));
            log::info!("hipaa-audit: policy loaded; chain {chain_id} started");
        }
        Some(Duration::from_millis(
            DeliveryConfig::from_policy(&audit).tick_ms(),
        ))
    }

    pub fn shared(&self) -> Option<Rc<Shared>> {
        self.shared.clone()
    }

    /// Records acknowledged or given up: out of the shared buffered count (the chain-start is
    /// not in it).
    fn settle(&mut self, n: usize) {
        let mut counted = n;
        if n > 0 && std::mem::take(&mut self.start_unacked) {
            counted -= 1;
        }
        let skip = counted.min(self.precounted);
        self.precounted -= skip;
        counted -= skip;
        if let Some(shared) = &self.shared {
            shared.add_buffered(-i64::try_from(counted).unwrap_or(0));
        }
    }

    /// Whether every record this context was handed is acknowledged.
    fn all_delivered(&self) -> bool {
        let waiting = self.shared.as_ref().is_some_and(|s| {
            s.queued.get() > 0 || !s.fallback.borrow().is_empty() || !s.local.borrow().is_empty()
        });
        !waiting && self.delivery.as_ref().is_none_or(Delivery::is_empty)
    }

    /// Gives up whatever is still unacknowledged (counted, logged, out of the shared count).
    fn give_up_rest(&mut self) {
        let mut lost = self.delivery.as_ref().map_or(0, Delivery::unacked) as i64;
        if self.start_unacked {
            lost -= 1;
        }
        if let Some(shared) = &self.shared {
            lost += shared.discard_waiting() as i64;
        }
        if let Some(d) = self.delivery.as_mut() {
            *d = Delivery::new(d.config().clone());
        }
        self.start_unacked = false;
        if lost > 0 {
            log::error!("hipaa-audit: gave up {lost} audit record(s) not acknowledged by the collector by the deadline");
            host::count_n(host::DROPPED, lost.unsigned_abs());
            let counted = lost.saturating_sub(i64::try_from(self.precounted).unwrap_or(0));
            if let Some(shared) = &self.shared {
                shared.add_buffered(-counted.max(0));
                shared.share_buffered();
            }
        }
        self.precounted = 0;
    }

    /// While finishing: tell the host once everything is delivered or the deadline passed.
    fn finish_if_done(&mut self) {
        let Some(by) = self.done_by else {
            return;
        };
        let delivered = self.all_delivered() && self.token.is_none();
        if !delivered && host::now_millis() < by {
            return;
        }
        if !delivered {
            self.give_up_rest();
        }
        self.done_by = None;
        log::info!("hipaa-audit: configuration released; its records are delivered");
        if hostcalls::done().is_err() {
            log::warn!("hipaa-audit: the host did not take proxy_done");
        }
    }

    fn chain_id(&self) -> String {
        let counter = host::adjust_shared(host::VM_COUNTER_KEY, 1).unwrap_or(0);
        let mut seed = Vec::with_capacity(64);
        seed.extend_from_slice(&host::now_nanos().to_le_bytes());
        seed.extend_from_slice(&self.context_id.to_le_bytes());
        seed.extend_from_slice(&counter.to_le_bytes());
        // std seeds RandomState from the host (WASI random_get); mixed in, never relied on alone.
        let salt = std::collections::hash_map::RandomState::new().hash_one(self.context_id);
        seed.extend_from_slice(&salt.to_le_bytes());
        chain_id_from_seed(&seed)
    }

    /// Takes sealed records from the queue (and the fallback list), in order, and hands them to
    /// delivery, as far as delivery has room.
    fn drain(&mut self) {
        let (Some(shared), Some(delivery)) = (self.shared.as_ref(), self.delivery.as_mut()) else {
            return;
        };
        let now = host::now_millis();
        while delivery.room() > 0 {
            let Some(record) = shared.take() else {
                break;
            };
            delivery.push(record, now);
        }
    }

    /// Sends the next batch if one is due.
    fn send(&mut self, force: bool) {
        let (Some(shared), Some(delivery)) = (self.shared.as_ref(), self.delivery.as_mut()) else {
            return;
        };
        let now = host::now_millis();
        let Some(body) = delivery.poll(now, force) else {
            return;
        };
        let collector = &shared.audit.collector;
        let authority = collector.authority.as_deref().unwrap_or(&collector.cluster);
        let headers = vec![
            (":method", "POST"),
            (":path", collector.path.as_str()),
            (":authority", authority),
            ("content-type", "application/json"),
        ];
        let timeout = Duration::from_millis(delivery.config().timeout_ms.max(1));
        let records = delivery.batch_len() as u64;
        match hostcalls::dispatch_http_call(
            &collector.cluster,
            headers,
            Some(&body),
            vec![],
            timeout,
        ) {
            Ok(token) => {
                self.token = Some(token);
                host::count_n(host::SENT, records);
            }
            Err(status) => {
                self.token = None;
                let answer = delivery.on_dispatch_failed(now);
                host::count(host::RETRIED);
                log_failure(
                    &answer,
                    &format!("not dispatched ({status:?})"),
                    &collector.cluster,
                );
            }
        }
    }

    fn pump(&mut self) {
        self.drain();
        self.send(false);
        self.finish_if_done();
    }
}

fn log_failure(answer: &Answer, what: &str, cluster: &str) {
    if let Answer::Retry { failures, delay_ms } = answer {
        // The first failure and then every tenth, so a long outage does not flood the log.
        if *failures == 1 || failures % 10 == 0 {
            log::warn!(
                "hipaa-audit: delivery to cluster {cluster} failed ({what}); attempt {failures}, retrying in {delay_ms} ms"
            );
        }
    }
}

impl Context for AuditRoot {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        _body: usize,
        _trailers: usize,
    ) {
        if self.token != Some(token) {
            return;
        }
        self.token = None;
        let status = if num_headers == 0 {
            None
        } else {
            host::header(MapType::HttpCallResponseHeaders, ":status")
        };
        let now = host::now_millis();
        let Some(delivery) = self.delivery.as_mut() else {
            return;
        };
        let answer = delivery.on_response(status.as_deref(), now);
        let cluster = self
            .shared
            .as_ref()
            .map(|s| s.audit.collector.cluster.clone())
            .unwrap_or_default();
        let status_text = status.as_deref().unwrap_or("none");
        match answer {
            Answer::Acked(n) => {
                host::count_n(host::ACKED, n as u64);
                self.settle(n);
            }
            Answer::Retry { .. } => {
                host::count(host::RETRIED);
                log_failure(&answer, &format!("status {status_text}"), &cluster);
            }
            Answer::Split { kept, returned } => {
                host::count(host::RETRIED);
                log::warn!(
                    "hipaa-audit: cluster {cluster} refused a batch of {} record(s) (status {status_text}); resending it in halves",
                    kept + returned
                );
            }
            Answer::StandIn => {
                host::count(host::RETRIED);
                log::error!(
                    "hipaa-audit: cluster {cluster} refused one audit record alone (status {status_text}); sending a stand-in (its chain position, length and hash) so the trail records the loss"
                );
            }
            Answer::GivenUp(n) => {
                host::count_n(host::DROPPED, n as u64);
                log::error!(
                    "hipaa-audit: cluster {cluster} refused {n} audit record(s) and their stand-in (status {status_text}); given up, the collector shows the gap"
                );
                self.settle(n);
            }
            Answer::Ignored => {}
        }
        self.pump();
    }

    fn on_done(&mut self) -> bool {
        // The host releases this context: its configuration was replaced (a policy update) or
        // the VM stops. Records not yet acknowledged are still delivered — without waiting for
        // the flush interval — until all are acknowledged or DONE_DEADLINE_MS passes; only then
        // is the host told (proxy_done). What is left at the deadline is counted and logged.
        if let Some(d) = self.delivery.as_mut() {
            d.drain_now();
        }
        self.drain();
        self.send(false);
        if self.all_delivered() && self.token.is_none() {
            return true;
        }
        let deadline = i64::try_from(DONE_DEADLINE_MS).unwrap_or(i64::MAX);
        self.done_by = Some(host::now_millis().saturating_add(deadline));
        // The count now: if Envoy exits rather than only replacing the configuration, these are
        // the records lost with it (faults.rs reads this line).
        let mut unacked = self.delivery.as_ref().map_or(0, Delivery::unacked);
        if self.start_unacked {
            unacked = unacked.saturating_sub(1);
        }
        if let Some(shared) = &self.shared {
            unacked +=
                shared.queued.get() + shared.fallback.borrow().len() + shared.local.borrow().len();
        }
        // Out of the Envoy-wide count now: should the VM go away with them, the other VMs must
        // not refuse requests for records that no longer exist.
        if let Some(shared) = &self.shared {
            shared.add_buffered(-i64::try_from(unacked).unwrap_or(0));
            shared.share_buffered();
        }
        self.precounted = unacked;
        log::warn!(
            "hipaa-audit: VM stopping with {unacked} audit record(s) not yet acknowledged; delivering them for up to {} s before releasing the configuration",
            DONE_DEADLINE_MS / 1000
        );
        false
    }
}

impl RootContext for AuditRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = hipaa_host::plugin_configuration();
        let policy = match Policy::from_plugin_config(&config) {
            Ok(policy) => policy,
            Err(errors) => {
                log::error!("hipaa-audit: {}", errors.summary());
                return false;
            }
        };
        let Some(tick) = self.configure(Rc::new(policy)) else {
            return false;
        };
        if !hipaa_host::set_tick_period(tick) {
            log::warn!("hipaa-audit: the host refused the tick period; records are sent as the queue fills");
        }
        true
    }

    fn on_tick(&mut self) {
        if let Some(shared) = &self.shared {
            shared.share_buffered();
        }
        self.pump();
    }

    fn on_queue_ready(&mut self, _queue_id: u32) {
        self.pump();
    }

    /// Never None (the SDK panics on None): without a valid policy or key, a context that
    /// refuses every request with `filter_unconfigured`.
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self.shared.clone() {
            Some(shared) => Some(Box::new(AuditHttp::new(shared))),
            None => Some(Box::new(UnconfiguredHttp)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
