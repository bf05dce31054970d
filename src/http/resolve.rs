//! The host lookup cache: a host's addresses are looked up once a minute at
//! most, not once per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a host's addresses are reused before it is looked up again (as
/// curl's DNS cache does).
const RESOLVE_TTL: Duration = Duration::from_secs(60);

/// Looks each host up once a minute at most. ureq's own resolver looks the host
/// up again for every request, even one that goes out on a kept-alive
/// connection, and with a timeout set it does so on a new thread: one thread per
/// page. (ureq's resolver interface is marked as outside its semver promise; the
/// version is pinned by Cargo.lock.)
#[derive(Debug, Default)]
pub(super) struct CachingResolver {
    inner: ureq::unversioned::resolver::DefaultResolver,
    known: Mutex<HashMap<String, (Instant, ureq::unversioned::resolver::ResolvedSocketAddrs)>>,
}

impl ureq::unversioned::resolver::Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or_default(),
            uri.authority()
                .map(ureq::http::uri::Authority::as_str)
                .unwrap_or_default()
        );
        if let Some((at, addrs)) = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            && at.elapsed() < RESOLVE_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, (Instant::now(), addrs.clone()));
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_looked_up_once_per_scheme_and_authority() {
        use ureq::unversioned::resolver::Resolver;
        let resolver = CachingResolver::default();
        let config = ureq::config::Config::default();
        let resolve = |uri: &str| {
            let uri: ureq::http::Uri = uri.parse().unwrap();
            let timeout = ureq::unversioned::transport::NextTimeout {
                after: ureq::unversioned::transport::time::Duration::from_secs(5),
                reason: ureq::Timeout::Resolve,
                per_read: None,
                per_write: None,
            };
            resolver.resolve(&uri, &config, timeout).unwrap().to_vec()
        };
        let first = resolve("http://127.0.0.1:8811/users?page=1");
        assert_eq!(first, ["127.0.0.1:8811".parse().unwrap()]);
        assert_eq!(resolve("http://127.0.0.1:8811/users?page=2"), first);
        assert_eq!(resolver.known.lock().unwrap().len(), 1);
        resolve("http://127.0.0.1:9000/");
        assert_eq!(resolver.known.lock().unwrap().len(), 2);
    }
}
