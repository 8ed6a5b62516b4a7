//! Opens this region's account in the shared bank (once), pays every other account 1, and shows
//! the balances and the total, which never changes with transfers.

use dsss_examples::connect::run_example;
use dsss_examples::{Bank, BankError};

fn main() -> std::process::ExitCode {
    run_example(|client| async move {
        let bank = client
            .open::<Bank>("examples/bank")
            .await
            .map_err(|error| error.to_string())?;
        let me = client.region().to_owned();
        match bank.open_account(me.clone(), 100).await {
            Ok(Ok(())) => println!("opened account {me} with 100"),
            Ok(Err(BankError::AccountExists(_))) => println!("account {me} is open already"),
            Ok(Err(refused)) => return Err(refused.to_string()),
            Err(error) => return Err(error.to_string()),
        }
        let others: Vec<String> = bank.read(|bank| {
            bank.accounts()
                .keys()
                .filter(|name| **name != me)
                .cloned()
                .collect()
        });
        for other in others {
            let outcome = bank
                .transfer(me.clone(), other.clone(), 1)
                .await
                .map_err(|error| error.to_string())?;
            match outcome {
                Ok(()) => println!("paid {other} 1"),
                Err(refused) => println!("paying {other} was refused: {refused}"),
            }
        }
        bank.sync().await.map_err(|error| error.to_string())?;
        bank.read(|bank| {
            for (name, balance) in bank.accounts() {
                println!("  {name:<16} {balance:>6}");
            }
            println!("  {:<16} {:>6}", "total", bank.total());
        });
        Ok(())
    })
}
