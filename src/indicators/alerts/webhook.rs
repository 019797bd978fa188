//! The webhook: each alert event as a JSON POST to `alerts.webhook_url`, one at a time in
//! order, retried with backoff and full jitter (the sinks' [`retry`] timing) on network errors,
//! timeouts, 408, 429 and 5xx, honouring `Retry-After` (capped by the give-up time); given up
//! after `webhook_max_retries` retries or `webhook_give_up`. Any other answer (3xx, 4xx) is a
//! refusal: logged and counted, never retried, since the same body would be refused again.

use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;

use super::config::AlertSettings;
use super::outputs::Counters;
use crate::sink::influx::error_chain;
use crate::sink::retry;

/// Most bytes of an error answer kept for the log.
const ERROR_BODY_MAX: usize = 1024;

/// A configured webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `scheme://host:port` for logs: a webhook's path often holds its secret.
    origin: String,
    max_retries: u32,
    give_up: Duration,
}

/// What one POST came to.
#[derive(Debug)]
enum Attempt {
    Delivered,
    /// Will not succeed by repeating it.
    Refused(String),
    Retry(String, Option<Duration>),
}

/// How an event's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered { attempts: u32 },
    Refused(String),
    GaveUp(String),
}

impl Webhook {
    /// None when no `webhook_url` is set.
    pub fn new(settings: &AlertSettings) -> Result<Option<Webhook>, String> {
        let Some(text) = &settings.webhook_url else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(text)
            .map_err(|e| format!("alerts.webhook_url = {text:?} is not a URL: {e}"))?;
        let client = reqwest::ClientBuilder::new()
            .timeout(settings.webhook_timeout)
            .connect_timeout(settings.webhook_timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(2)
            // A followed 301/302 would turn the POST into a GET without the event.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the webhook client for {text}: {e}"))?;
        Ok(Some(Webhook {
            client,
            origin: url.origin().ascii_serialization(),
            url,
            max_retries: settings.webhook_max_retries,
            give_up: settings.webhook_give_up,
        }))
    }

    /// Delivers `body` (an event's JSON), retrying as the module says; counts what happens.
    pub async fn deliver(&self, body: &[u8], rule: &str, counters: &Counters) -> Delivery {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (why, wait) = match self.post(body).await {
                Attempt::Delivered => {
                    Counters::add(&counters.webhook_delivered);
                    return Delivery::Delivered { attempts: attempt };
                }
                Attempt::Refused(why) => {
                    Counters::add(&counters.webhook_failed);
                    metrics::counter!("qala_alert_webhook_failures_total").increment(1);
                    tracing::warn!(
                        rule, webhook = %self.origin, error = %why,
                        "the alert webhook refused the event; not retried"
                    );
                    return Delivery::Refused(why);
                }
                Attempt::Retry(why, retry_after) => {
                    let wait = retry::wait(attempt, rand::random::<f64>(), retry_after);
                    if attempt > self.max_retries || started.elapsed() + wait > self.give_up {
                        Counters::add(&counters.webhook_failed);
                        metrics::counter!("qala_alert_webhook_failures_total").increment(1);
                        tracing::warn!(
                            rule, webhook = %self.origin, attempts = attempt, error = %why,
                            "alert webhook delivery given up"
                        );
                        return Delivery::GaveUp(why);
                    }
                    (why, wait)
                }
            };
            Counters::add(&counters.webhook_retries);
            metrics::counter!("qala_alert_webhook_retries_total").increment(1);
            tracing::debug!(
                rule, webhook = %self.origin, attempt, error = %why, wait = ?wait,
                "alert webhook failed; retrying"
            );
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(&self, body: &[u8]) -> Attempt {
        let request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let what = if e.is_timeout() {
                    "timed out"
                } else {
                    "failed"
                };
                // Without the URL: a webhook's path often holds its secret.
                let e = e.without_url();
                return Attempt::Retry(format!("POST {what}: {}", error_chain(&e)), None);
            }
        };
        let code = response.status().as_u16();
        let retry_after = retry::retry_after(&response);
        let mut text = retry::read_body(&mut response, ERROR_BODY_MAX).await;
        text.truncate(ERROR_BODY_MAX);
        let answered = || {
            let body: String = String::from_utf8_lossy(&text)
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!("answered {code}: {}", body.trim())
        };
        match code {
            200..=299 => Attempt::Delivered,
            408 | 429 | 500..=599 => Attempt::Retry(answered(), retry_after),
            _ => Attempt::Refused(answered()),
        }
    }
}
