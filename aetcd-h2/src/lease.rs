//! Lease calls on [`Client`]: grant, revoke, time-to-live, list.
//! (Automatic keep-alive comes with the lease keeper.)

pub use aetcd_core::rpc::lease::{
    LeaseGrant, LeaseGrantResponse, LeaseLeases, LeaseLeasesResponse, LeaseRevoke, LeaseRevokeResponse,
    LeaseTimeToLive, LeaseTimeToLiveResponse,
};

use crate::client::{Client, ResponseFuture};

impl<R> Client<R> {
    /// Grants a lease of `ttl` seconds.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// use aetcd_h2::kv::Put;
    /// let lease = client.lease_grant(30).await?.id;
    /// client.request(Put::new("session/me", "alive").lease(lease)).await?;
    /// # Ok(()) }
    /// ```
    pub fn lease_grant(&self, ttl: i64) -> ResponseFuture<LeaseGrant> {
        self.request(LeaseGrant::new(ttl))
    }

    /// Revokes lease `id`, deleting its keys.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// client.lease_revoke(0x1234).await?;
    /// # Ok(()) }
    /// ```
    pub fn lease_revoke(&self, id: i64) -> ResponseFuture<LeaseRevoke> {
        self.request(LeaseRevoke::new(id))
    }

    /// How long lease `id` has left, with its keys.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let info = client.lease_time_to_live(0x1234).await?;
    /// println!("{} s left, keys {:?}", info.ttl, info.keys);
    /// # Ok(()) }
    /// ```
    pub fn lease_time_to_live(&self, id: i64) -> ResponseFuture<LeaseTimeToLive> {
        self.request(LeaseTimeToLive::new(id).with_keys())
    }

    /// Every lease id.
    ///
    /// ```no_run
    /// # async fn demo<R>(client: aetcd_h2::Client<R>) -> Result<(), aetcd_h2::Error> {
    /// let ids = client.leases().await?.ids;
    /// # Ok(()) }
    /// ```
    pub fn leases(&self) -> ResponseFuture<LeaseLeases> {
        self.request(LeaseLeases::new())
    }
}
