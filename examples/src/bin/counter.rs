//! Adds to the shared counter from this region and shows the value every instance sees.

use dsss_examples::Counter;
use dsss_examples::connect::run_example;

fn main() -> std::process::ExitCode {
    run_example(|client| async move {
        let counter = client
            .open::<Counter>("examples/counter")
            .await
            .map_err(|error| error.to_string())?;
        for amount in [1, 2, 3] {
            let value = counter
                .add(amount)
                .await
                .map_err(|error| error.to_string())?;
            println!("add({amount}) -> {value}");
        }
        counter.sync().await.map_err(|error| error.to_string())?;
        println!(
            "after sync(): value {} at position {} of region {}",
            counter.read(|counter| counter.value()),
            counter.position(),
            client.region()
        );
        Ok(())
    })
}
