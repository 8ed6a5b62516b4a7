use serde::{Deserialize, Serialize};

#[dsss::shared_object]
#[derive(Default, Serialize, Deserialize)]
pub struct Lobby {
    seats: Vec<String>,
}

#[dsss::methods]
impl Lobby {
    #[mutate(id = 1)]
    pub fn join(&mut self, (first, second): (String, String)) {
        self.seats.push(first);
        self.seats.push(second);
    }

    #[mutate(id = 2)]
    pub fn leave(&mut self, _: String) {
        self.seats.pop();
    }
}

fn main() {}
