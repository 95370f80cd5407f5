//! `Replay`: stored evaluations under a candidate rule set, streamed as they are found, the
//! summary last.

use super::{State, pb, rpc};
use crate::replay::{self, Candidate, Event};
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// `Replay`.
pub struct Replays {
    state: State,
}

impl Replays {
    pub(super) fn new(state: State) -> Replays {
        Replays { state }
    }
}

/// Answers queued for a slow reader before the replay waits for it.
const REPLAY_BUFFER: usize = 1024;

/// Queues an answer, waiting while the reader is behind; `Break` once the reader went away (the
/// client cancelled or disconnected), so the replay stops instead of running on for nobody.
/// Runs on the replay's own blocking thread, which may wait.
fn send_waiting(tx: &mpsc::Sender<Result<pb::ReplayResponse, Status>>, mut m: Result<pb::ReplayResponse, Status>) -> ControlFlow<()> {
    loop {
        match tx.try_send(m) {
            Ok(()) => return ControlFlow::Continue(()),
            Err(mpsc::error::TrySendError::Closed(_)) => return ControlFlow::Break(()),
            Err(mpsc::error::TrySendError::Full(back)) => {
                m = back;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}

type ReplayStream = Pin<Box<dyn Stream<Item = Result<pb::ReplayResponse, Status>> + Send>>;

fn event(e: Event) -> Option<pb::ReplayResponse> {
    use pb::replay_response::Event as E;
    let ev = match e {
        Event::Progress(_) => return None,
        Event::Change(c) => E::Change(pb::RecordChange {
            evaluation_id: c.evaluation_id,
            subject: c.subject,
            old_outcome: c.old_outcome,
            new_outcome: c.new_outcome,
            old_total: c.old_total,
            new_total: c.new_total,
            rules_added: c.rules_added,
            rules_removed: c.rules_removed,
            criteria: c
                .criteria
                .into_iter()
                .map(|(name, old_value, new_value)| pb::CriterionChange { name, old_value, new_value })
                .collect(),
            flags_added: c.flags_added,
            flags_removed: c.flags_removed,
            cohort_id: c.cohort_id.unwrap_or_default(),
        }),
        Event::NotEvaluable(n) => {
            E::NotEvaluable(pb::NotEvaluable { evaluation_id: n.evaluation_id, subject: n.subject, reason: n.reason })
        }
    };
    Some(pb::ReplayResponse { event: Some(ev) })
}

/// The summary as a message.
pub fn summary(s: &replay::Summary) -> pb::ReplaySummary {
    pb::ReplaySummary {
        candidate: s.candidate.as_ref().map(|(id, version, hash)| pb::RuleSetIdentity {
            id: id.clone(),
            version: version.clone(),
            hash: hash.clone(),
        }),
        evaluations: s.evaluations,
        evaluated: s.evaluated,
        changed: s.changed,
        not_evaluable: s.not_evaluable,
        transitions: s
            .transitions
            .iter()
            .map(|((from, to), count)| pb::Transition { from: from.clone(), to: to.clone(), count: *count })
            .collect(),
        cohorts: s
            .cohorts
            .iter()
            .map(|c| pb::CohortQuotaEffect {
                cohort_id: c.cohort_id.clone(),
                members: c.members,
                old_demoted: c.old_demoted,
                new_demoted: c.new_demoted,
            })
            .collect(),
        mismatches: s.mismatches,
    }
}

#[tonic::async_trait]
impl super::inbound::replay_service_server::ReplayService for Replays {
    type ReplayStream = ReplayStream;

    async fn replay(&self, request: Request<pb::ReplayRequest>) -> Result<Response<ReplayStream>, Status> {
        let req = request.into_inner();
        let batcher = self
            .state
            .store
            .clone()
            .ok_or_else(|| Status::failed_precondition("this server runs without a store (start it with --store)"))?;
        let candidate = match (&req.candidate, req.verify) {
            (_, true) => Candidate::Verify,
            (Some(pb::replay_request::Candidate::Served(r)), false) => {
                let reg = self.state.registry.load_full();
                let l = reg.resolve(&r.id, r.version.as_deref(), None).map_err(|e| super::status::not_found(&e))?;
                Candidate::Rules(Arc::new(l.rs.clone()))
            }
            (Some(pb::replay_request::Candidate::Source(text)), false) => match crate::compile::compile("candidate.merit", text) {
                Ok((rs, _)) => Candidate::Rules(Arc::new(rs)),
                Err((source, diags)) => {
                    let lines: Vec<String> =
                        diags.iter().filter(|d| d.is_error()).map(|d| crate::diagnostic::render_line(&source, d)).collect();
                    return Err(Status::invalid_argument(format!("the candidate rules do not compile:\n{}", lines.join("\n"))));
                }
            },
            (None, false) => {
                return Err(Status::invalid_argument("candidate: a served rule set or inline source is required (or verify = true)"));
            }
        };
        let filter = rpc::filter_of(req.filter.as_ref())?;
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::ReplayResponse, Status>>(REPLAY_BUFFER);
        // Replay evaluates pages on threads of its own: it runs on a blocking thread, never on
        // an async worker that other requests need.
        let handle = tokio::runtime::Handle::current();
        let metrics = self.state.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let sender = tx.clone();
            let result = handle.block_on(replay::replay(batcher.store.as_ref(), &candidate, &filter, move |e| match event(e) {
                Some(m) => send_waiting(&sender, Ok(m)),
                None if sender.is_closed() => ControlFlow::Break(()),
                None => ControlFlow::Continue(()),
            }));
            let last = match result {
                Ok(s) => Ok(pb::ReplayResponse { event: Some(pb::replay_response::Event::Summary(summary(&s))) }),
                Err(e) => Err(Status::unavailable(e.to_string())),
            };
            let code = if tx.is_closed() { tonic::Code::Cancelled } else { last.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok) };
            metrics.observe("Replay", code, started.elapsed());
            let _ = send_waiting(&tx, last);
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> Result<pb::ReplayResponse, Status> {
        Ok(pb::ReplayResponse { event: None })
    }

    #[test]
    fn a_slow_reader_is_waited_for_and_a_gone_one_stops_the_replay() {
        let (tx, mut rx) = mpsc::channel(1);
        assert_eq!(send_waiting(&tx, answer()), ControlFlow::Continue(()));
        // The buffer is full: the sender waits until the reader takes the first answer.
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            let first = rx.blocking_recv();
            let second = rx.blocking_recv();
            (first.is_some(), second.is_some())
        });
        assert_eq!(send_waiting(&tx, answer()), ControlFlow::Continue(()));
        assert_eq!(reader.join().expect("reader"), (true, true));
        // The reader is gone (its receiver dropped with the thread).
        assert_eq!(send_waiting(&tx, answer()), ControlFlow::Break(()));
    }
}
