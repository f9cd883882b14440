//! Domain event services: sale-order notifications to the order's room and its merchant's
//! room, built on [`EventService`] (the IGNIS `BaseSocketEventService` pattern).
//!
//! ```text
//! cargo run --example order_notifications                      # in-process server handle
//! redis-server --port 6379 --save '' --appendonly no &
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example order_notifications   # via the emitter
//! ```
//!
//! The example starts a server (on the Redis bus when `REDIS_URL` is set), connects a customer
//! watching order 1001 and a merchant dashboard for merchant 7, then publishes an order update
//! through `SaleEvents`, once bound to the server handle or, with Redis, to an emitter as a
//! separate worker process would.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sealwire::compat::EventService;
use sealwire::server::{GlobRooms, Identity, Server};
use serde::Serialize;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// A sale order as the domain sees it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SaleOrder {
    id: u64,
    merchant_id: u64,
    status: &'static str,
    total: f64,
}

/// Room names and topics of the sale domain.
mod sale_rooms {
    pub(crate) const TOPIC_ORDER: &str = "sale:order";

    pub(crate) fn order_rooms(order_id: u64, merchant_id: u64) -> Vec<String> {
        vec![
            format!("sale-order:{order_id}"),
            format!("merchant:{merchant_id}"),
        ]
    }
}

/// The sale domain's socket events (the seed's `SaleSocketEventService`).
#[derive(Clone)]
struct SaleEvents {
    events: EventService,
}

impl SaleEvents {
    fn new() -> Self {
        Self {
            events: EventService::new("SaleEvents"),
        }
    }

    /// Notifies the order's room and its merchant's room; skips (with a warning) while the
    /// socket layer is not ready, and never fails the business operation.
    async fn notify_order_update(&self, order: &SaleOrder) {
        if !self.events.is_ready() {
            tracing::warn!(
                order = order.id,
                "socket events not ready; skipping order notification"
            );
            return;
        }
        let rooms = sale_rooms::order_rooms(order.id, order.merchant_id);
        let sent = self
            .events
            .send_to_rooms(&rooms, sale_rooms::TOPIC_ORDER, order)
            .await;
        println!(
            "order {} published to {sent}/{} rooms",
            order.id,
            rooms.len()
        );
    }
}

async fn watcher(
    url: &str,
    token: &str,
    room: &str,
) -> anyhow::Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await?;
    ws.send(Message::text(
        json!({"event":"authenticate","data":{"token":token}}).to_string(),
    ))
    .await?;
    let _connected = ws.next().await;
    ws.send(Message::text(
        json!({"event":"join","data":{"rooms":[room]}}).to_string(),
    ))
    .await?;
    Ok(ws)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let redis_url = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());

    let mut builder = Server::builder()
        .authenticate(|req: sealwire::server::AuthRequest| async move {
            Ok(req.token.map(Identity::new))
        })
        .validate_rooms(GlobRooms::new(["sale-order:*", "merchant:*"])?);
    if let Some(url) = &redis_url {
        builder = builder.bus(sealwire::bus::RedisBus::new(
            sealwire::bus::RedisBusConfig::new(url.as_str()),
        )?);
    }
    let server = builder.build()?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    tokio::spawn(sealwire::transport::serve(listener, server.clone()));
    while !server.is_ready() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let mut customer = watcher(&url, "customer-1", "sale-order:1001").await?;
    let mut merchant = watcher(&url, "merchant-7-staff", "merchant:7").await?;
    tokio::time::sleep(Duration::from_millis(200)).await; // joins (and Redis subscriptions)

    let sale = SaleEvents::new();
    let order = SaleOrder {
        id: 1001,
        merchant_id: 7,
        status: "paid",
        total: 59.9,
    };
    sale.notify_order_update(&order).await; // not bound yet: skipped

    match &redis_url {
        Some(url) => {
            let emitter = sealwire::emitter::Emitter::connect(
                sealwire::emitter::EmitterConfig::new(url.as_str()),
            )
            .await?;
            sale.events.bind(std::sync::Arc::new(emitter));
        }
        None => {
            sale.events.bind(std::sync::Arc::new(server.clone()));
        }
    }
    sale.notify_order_update(&order).await;

    for (who, ws) in [("customer", &mut customer), ("merchant", &mut merchant)] {
        while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            if let Message::Text(t) = m {
                println!("{who} received {t}");
                if t.contains("sale:order") {
                    break;
                }
            }
        }
    }
    server.shutdown().await;
    Ok(())
}
