//! aetcd on smol: `cargo run -p aetcd-smol --example demo -- [ENDPOINT]`.

use aetcd_smol::kv::{Compare, Put, Txn};
use aetcd_smol::{Client, Error};

fn main() -> Result<(), Error> {
    let endpoint = std::env::args().nth(1).unwrap_or_else(|| "localhost:2379".to_owned());
    smol::block_on(async {
        let client = Client::connect(endpoint.as_str()).await?;
        client.put("demo/runtime", "smol").await?;
        println!("demo/runtime = {:?}", client.get("demo/runtime").await?.value());
        let first = Txn::new().when([Compare::version("demo/once").eq(0)]).and_then([Put::new("demo/once", "x")]);
        println!("first writer: {}", client.txn(first).await?.succeeded);
        client.delete_prefix("demo/").await?;
        client.close().await;
        Ok(())
    })
}
