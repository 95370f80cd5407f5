//! The concurrency limit: beyond `max_concurrent_requests` in flight, a request is answered
//! RESOURCE_EXHAUSTED at once instead of queueing without bound. Health checks and reflection
//! are exempt, so probes keep answering while the service is saturated (a probe refused under
//! load would have an orchestrator restart a healthy server).

use super::metrics::Metrics;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::Semaphore;
use tonic::codegen::http;

/// Paths that never wait for a slot.
const EXEMPT: [&str; 2] = ["/grpc.health.", "/grpc.reflection."];

/// Layer that puts [`Shed`] in front of every service of the server.
#[derive(Clone)]
pub struct ShedLayer {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl ShedLayer {
    /// At most `limit` requests in flight at once (at least one).
    pub fn new(limit: usize, metrics: Arc<Metrics>) -> ShedLayer {
        ShedLayer { permits: Arc::new(Semaphore::new(limit.clamp(1, Semaphore::MAX_PERMITS))), metrics }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Shed<S> {
        Shed { inner, permits: self.permits.clone(), metrics: self.metrics.clone() }
    }
}

/// A service whose requests take a slot, or are refused when none is free.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<http::Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let path = req.uri().path();
        if EXEMPT.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(req));
        }
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let answer = self.inner.call(req);
                Box::pin(async move {
                    let r = answer.await;
                    drop(permit);
                    r
                })
            }
            Err(_) => {
                self.metrics.shed();
                let status = tonic::Status::resource_exhausted("too many requests in flight; try again shortly");
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
