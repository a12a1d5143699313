//! A real DNS server for tests: hickory-server with an in-memory zone, serving UDP on
//! `127.0.0.1` at an ephemeral port (never any other address), counting the queries
//! it receives.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
};

use hickory_server::{
    net::runtime::{Time, TokioRuntimeProvider},
    proto::rr::{
        rdata::{SOA, SRV},
        LowerName, Name, RData, Record,
    },
    server::{Request, RequestHandler, ResponseHandler, ResponseInfo},
    store::in_memory::InMemoryZoneHandler,
    zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType},
    Server,
};

/// The zone every test server is authoritative for.
pub const ZONE: &str = "example.test";

/// One SRV record: owner name (relative to [`ZONE`]), priority, weight, port, target.
pub struct SrvRecord<'a> {
    pub owner: &'a str,
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: &'a str,
}

/// The running server; stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    // Field order matters: the server's tasks go before their runtime.
    _server: Server<CountingCatalog>,
    _runtime: tokio::runtime::Runtime,
}

impl TestDns {
    /// Starts a server for [`ZONE`] holding `records`.
    pub fn start(records: &[SrvRecord<'_>]) -> TestDns {
        let origin = Name::from_str(&format!("{ZONE}.")).unwrap();
        let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
            origin.clone(),
            ZoneType::Primary,
            AxfrPolicy::Deny,
        );
        let soa = SOA::new(
            Name::from_str(&format!("ns.{ZONE}.")).unwrap(),
            Name::from_str(&format!("hostmaster.{ZONE}.")).unwrap(),
            1,
            3600,
            600,
            86400,
            60,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1));
        for r in records {
            let owner = Name::from_str(&format!("{}.{ZONE}.", r.owner)).unwrap();
            let target = Name::from_str(r.target).unwrap();
            let srv = SRV::new(r.priority, r.weight, r.port, target);
            assert!(zone.upsert_mut(Record::from_rdata(owner, 300, RData::SRV(srv)), 1));
        }
        let mut catalog = Catalog::new();
        catalog.upsert(
            LowerName::new(&origin),
            vec![Arc::new(zone) as Arc<dyn ZoneHandler>],
        );
        let queries = Arc::new(AtomicUsize::new(0));
        let handler = CountingCatalog {
            catalog,
            queries: queries.clone(),
        };

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (server, addr) = runtime.block_on(async move {
            // Loopback only: the tests must never listen on another interface.
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            assert!(addr.ip().is_loopback());
            let mut server = Server::new(handler);
            server.register_socket(socket);
            (server, addr)
        });
        TestDns {
            addr,
            queries,
            _server: server,
            _runtime: runtime,
        }
    }

    /// Where the server listens, `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many requests the server has received.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }
}

/// The catalog, counting each request before answering it.
struct CountingCatalog {
    catalog: Catalog,
    queries: Arc<AtomicUsize>,
}

// `RequestHandler` is declared with `#[async_trait]`; this is the signature that macro
// gives it, written out so the tests need no extra dependency.
impl RequestHandler for CountingCatalog {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.catalog
            .handle_request::<R, T>(request, response_handle)
    }
}
