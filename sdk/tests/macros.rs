//! `#[dsss::shared_object]` and `#[dsss::methods]` on a lobby and a chat room: what the
//! generated code does when a replica applies calls (docs/design.md section 1), called directly
//! through `SharedObject`, with no network.
#![deny(missing_docs)]

use std::collections::BTreeMap;

use dsss::{Codec, MethodError, MethodSchema, ObjectSchema, Postcard, SharedObject};
use serde::{Deserialize, Serialize};

/// The lobby has no free seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LobbyFull {
    /// The lobby's capacity.
    pub capacity: u32,
}

/// Codecs of the application's own, named by path in `#[mutate(codec = ...)]`.
pub mod codecs {
    use dsss::{Codec, CodecError, Postcard};
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    /// Postcard with the bytes in reverse order: easy to tell apart from postcard itself.
    pub struct Reversed;

    impl Codec for Reversed {
        const NAME: &'static str = "reversed-postcard";

        fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
            let mut bytes = Postcard::encode(value)?;
            bytes.reverse();
            Ok(bytes)
        }

        fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
            let mut bytes = bytes.to_vec();
            bytes.reverse();
            Postcard::decode(&bytes).map_err(|error| CodecError {
                codec: Self::NAME,
                reason: error.reason,
            })
        }
    }
}

/// Seats of a game lobby.
#[dsss::shared_object]
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lobby {
    seats: BTreeMap<String, u32>,
    capacity: u32,
    reserved: Vec<(u32, String)>,
    resets: u32,
}

#[dsss::methods(retired = [4, 3])]
impl Lobby {
    /// Empties the lobby. Declared first but id 7: the schema sorts by id.
    #[mutate(id = 7)]
    pub fn reset(&mut self) {
        self.seats.clear();
        self.resets += 1;
    }

    /// Seats a player and returns the seat, or says the lobby is full.
    #[mutate(id = 1)]
    pub fn join(&mut self, player: String) -> Result<u32, LobbyFull> {
        if self.free_seats() == 0 {
            return Err(LobbyFull {
                capacity: self.capacity,
            });
        }
        let seat = self.seats.len() as u32;
        self.seats.insert(player, seat);
        Ok(seat)
    }

    /// Frees a player's seat and returns it.
    #[mutate(id = 2, codec = "json")]
    pub fn leave(&mut self, player: String) -> Option<u32> {
        self.seats.remove(&player)
    }

    /// Sets the capacity; spelled out with spaces the schema text must not keep.
    #[mutate(id = 5, codec = "postcard")]
    pub fn reserve(&mut self, capacity: u32, pairs: Vec<(u32, String)>) -> usize {
        self.capacity = capacity;
        self.reserved.extend(pairs);
        self.reserved.len()
    }

    /// Renames a player, in the application's own codec.
    #[mutate(id = 6, codec = codecs::Reversed)]
    pub fn rename(&mut self, from: String, to: String) -> bool {
        match self.seats.remove(&from) {
            Some(seat) => {
                self.seats.insert(to, seat);
                true
            }
            None => false,
        }
    }

    /// A getter: left alone by the macro.
    pub fn free_seats(&self) -> u32 {
        self.capacity.saturating_sub(self.seats.len() as u32)
    }
}

fn lobby_with_capacity(capacity: u32) -> Lobby {
    Lobby {
        capacity,
        ..Lobby::default()
    }
}

fn join(lobby: &mut Lobby, player: &str) -> Result<u32, LobbyFull> {
    let arguments = Postcard::encode(&lobby_arguments::Join {
        player: player.into(),
    })
    .unwrap();
    let result = lobby.apply(1, &arguments).unwrap();
    Postcard::decode(&result).unwrap()
}

#[test]
fn dispatch_runs_the_method_with_the_decoded_arguments_and_encodes_its_result() {
    let mut lobby = lobby_with_capacity(2);
    assert_eq!(join(&mut lobby, "ann"), Ok(0));
    assert_eq!(join(&mut lobby, "bob"), Ok(1));
    assert_eq!(join(&mut lobby, "cid"), Err(LobbyFull { capacity: 2 }));
    assert_eq!(lobby.free_seats(), 0);
    assert_eq!(lobby.seats.get("bob"), Some(&1));

    // The arguments struct is encoded as its fields in order: the log format of a call.
    let struct_bytes = Postcard::encode(&lobby_arguments::Reserve {
        capacity: 9,
        pairs: vec![(1, "ann".into())],
    })
    .unwrap();
    let tuple_bytes = Postcard::encode(&(9u32, vec![(1u32, "ann")])).unwrap();
    assert_eq!(struct_bytes, tuple_bytes);
    let result = lobby.apply(5, &struct_bytes).unwrap();
    assert_eq!(Postcard::decode::<usize>(&result).unwrap(), 1);
    assert_eq!(lobby.capacity, 9);

    let result = lobby.apply(7, &[]).unwrap();
    assert_eq!(Postcard::decode::<()>(&result), Ok(()));
    assert!(lobby.seats.is_empty());
    assert_eq!(lobby.resets, 1);
}

#[test]
fn a_json_method_takes_and_returns_json() {
    let mut lobby = lobby_with_capacity(3);
    join(&mut lobby, "ann").unwrap();
    join(&mut lobby, "bob").unwrap();
    let result = lobby.apply(2, br#"{"player":"bob"}"#).unwrap();
    assert_eq!(result, b"1");
    assert_eq!(
        serde_json::from_slice::<Option<u32>>(&result).unwrap(),
        Some(1)
    );
    let result = lobby.apply(2, br#"{"player":"bob"}"#).unwrap();
    assert_eq!(
        serde_json::from_slice::<Option<u32>>(&result).unwrap(),
        None
    );

    // Postcard bytes are not JSON: the json method refuses them.
    let postcard = Postcard::encode(&lobby_arguments::Leave {
        player: "ann".into(),
    })
    .unwrap();
    let error = lobby.apply(2, &postcard).unwrap_err();
    let MethodError::Arguments { method, source, .. } = &error else {
        panic!("expected an arguments error, got {error:?}");
    };
    assert_eq!((*method, source.codec), ("leave", "json"));
    assert_eq!(lobby.seats.get("ann"), Some(&0));
}

#[test]
fn bad_argument_bytes_name_the_method_and_leave_the_state_alone() {
    let mut lobby = lobby_with_capacity(2);
    join(&mut lobby, "ann").unwrap();
    let before = lobby.encode_state().unwrap();

    // A string length that runs past the end of the bytes.
    let error = lobby.apply(1, &[0x20, b'a']).unwrap_err();
    match &error {
        MethodError::Arguments {
            type_name,
            method,
            source,
        } => {
            assert_eq!((*type_name, *method), ("Lobby", "join"));
            assert_eq!(source.codec, "postcard");
        }
        other => panic!("expected an arguments error, got {other:?}"),
    }
    assert!(error.to_string().contains("Lobby::join"), "{error}");

    // A valid call followed by a stray byte is refused too.
    let mut trailing = Postcard::encode(&lobby_arguments::Join {
        player: "bob".into(),
    })
    .unwrap();
    trailing.push(0);
    let error = lobby.apply(1, &trailing).unwrap_err();
    assert!(
        matches!(error, MethodError::Arguments { method: "join", .. }),
        "{error:?}"
    );
    assert_eq!(lobby.encode_state().unwrap(), before);
}

#[test]
fn unknown_and_retired_ids_are_unknown_methods() {
    let mut lobby = lobby_with_capacity(2);
    for method_id in [0, 3, 4, 8, u32::MAX] {
        assert_eq!(
            lobby.apply(method_id, &[]),
            Err(MethodError::UnknownMethod {
                type_name: "Lobby",
                method_id
            })
        );
    }
}

#[test]
fn the_schema_lists_every_method_by_id_with_canonical_texts() {
    let method = |id, name: &str, arguments: &str, result: &str, codec: &str| MethodSchema {
        id,
        name: name.into(),
        arguments: arguments.into(),
        result: result.into(),
        codec: codec.into(),
    };
    let expected = ObjectSchema {
        type_name: "Lobby".into(),
        methods: vec![
            method(
                1,
                "join",
                "player: String",
                "Result<u32, LobbyFull>",
                "postcard",
            ),
            method(2, "leave", "player: String", "Option<u32>", "json"),
            method(
                5,
                "reserve",
                "capacity: u32, pairs: Vec<(u32, String)>",
                "usize",
                "postcard",
            ),
            method(
                6,
                "rename",
                "from: String, to: String",
                "bool",
                "reversed-postcard",
            ),
            method(7, "reset", "", "()", "postcard"),
        ],
        retired_ids: vec![3, 4],
    };
    assert_eq!(Lobby::schema(), &expected);
    assert_eq!(Lobby::schema().validate(), Ok(()));
    assert!(
        std::ptr::eq(Lobby::schema(), Lobby::schema()),
        "the schema is built once"
    );
}

#[test]
fn the_state_round_trips_through_postcard() {
    let mut lobby = lobby_with_capacity(4);
    join(&mut lobby, "ann").unwrap();
    lobby
        .apply(
            5,
            &Postcard::encode(&lobby_arguments::Reserve {
                capacity: 4,
                pairs: vec![(3, "cid".into())],
            })
            .unwrap(),
        )
        .unwrap();
    let bytes = lobby.encode_state().unwrap();
    assert_eq!(bytes, Postcard::encode(&lobby).unwrap());
    assert_eq!(Lobby::decode_state(&bytes).unwrap(), lobby);
    let error = Lobby::decode_state(&bytes[..bytes.len() - 1]).unwrap_err();
    assert_eq!(error.codec, "postcard");
}

#[test]
fn a_codec_named_by_path_encodes_arguments_and_result() {
    let mut lobby = lobby_with_capacity(2);
    join(&mut lobby, "ann").unwrap();
    let arguments = codecs::Reversed::encode(&lobby_arguments::Rename {
        from: "ann".into(),
        to: "anna".into(),
    })
    .unwrap();
    let result = lobby.apply(6, &arguments).unwrap();
    assert_eq!(codecs::Reversed::decode::<bool>(&result), Ok(true));
    assert_eq!(lobby.seats.get("anna"), Some(&0));

    // The same arguments in plain postcard are not what this method reads.
    let plain = Postcard::encode(&lobby_arguments::Rename {
        from: "anna".into(),
        to: "ann".into(),
    })
    .unwrap();
    let error = lobby.apply(6, &plain).unwrap_err();
    let MethodError::Arguments { method, source, .. } = &error else {
        panic!("expected an arguments error, got {error:?}");
    };
    assert_eq!((*method, source.codec), ("rename", "reversed-postcard"));
}

#[test]
fn the_handle_derefs_to_the_object_and_has_one_method_per_mutating_method() {
    // Compile-level checks: the handle's methods have the documented signatures.
    fn name_of(handle: &LobbyHandle) -> &str {
        handle.name()
    }
    fn copy(handle: &LobbyHandle) -> LobbyHandle {
        handle.clone()
    }
    fn wrap(object: dsss::Object<Lobby>) -> LobbyHandle {
        <Lobby as SharedObject>::handle(object)
    }
    async fn calls(handle: &LobbyHandle) -> Result<(), dsss::CallError> {
        let seat: Result<u32, LobbyFull> = handle.join("ann".into()).await?;
        let freed: Option<u32> = handle.leave("ann".into()).await?;
        let count: usize = handle.reserve(3, vec![(1, "bob".into())]).await?;
        let renamed: bool = handle.rename("bob".into(), "rob".into()).await?;
        let (): () = handle.reset().await?;
        let free: u32 = handle.read(|lobby| lobby.free_seats());
        let _ = (seat, freed, count, renamed, free);
        Ok(())
    }
    let _ = (name_of, copy, wrap, calls);
    assert_eq!(
        std::any::type_name::<<Lobby as SharedObject>::Handle>(),
        std::any::type_name::<LobbyHandle>()
    );
}

/// A type in a module of its own, with the spellings the generated code must follow: `Self`,
/// `self::` and `super::` paths, a raw identifier, a `mut` argument and a type whose name is
/// also the name of a generated arguments struct.
pub mod chat {
    use serde::{Deserialize, Serialize};

    /// A message, named like the arguments struct of `Room::message`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Message {
        /// Who wrote it.
        pub author: String,
        /// What it says.
        pub text: String,
    }

    /// A chat room.
    #[dsss::shared_object]
    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub struct ChatRoom {
        /// The messages, oldest first.
        pub messages: Vec<Message>,
        /// How many times the room was moved.
        pub moves: u32,
    }

    #[dsss::methods]
    impl ChatRoom {
        /// Posts a message and returns how many the room holds.
        #[mutate(id = 1)]
        pub fn message(&mut self, mut message: self::Message) -> usize {
            message.text = message.text.trim().to_string();
            self.messages.push(message);
            self.messages.len()
        }

        /// Replaces the room with another one and returns the old one.
        #[mutate(id = 2)]
        pub(crate) fn replace(&mut self, room: Self) -> Self {
            std::mem::replace(self, room)
        }

        /// A method named with a keyword.
        #[mutate(id = 3)]
        pub fn r#move(&mut self, lobby: super::LobbyFull) -> u32 {
            self.moves += lobby.capacity;
            self.moves
        }
    }

    #[test]
    fn generated_names_and_paths_follow_the_user_module() {
        use dsss::{Codec, Postcard, SharedObject};

        let mut room = ChatRoom::default();
        let arguments = Postcard::encode(&chat_room_arguments::Message {
            message: Message {
                author: "ann".into(),
                text: " hi ".into(),
            },
        })
        .unwrap();
        assert_eq!(
            room.apply(1, &arguments).unwrap(),
            Postcard::encode(&1usize).unwrap()
        );
        assert_eq!(room.messages[0].text, "hi");

        let other = ChatRoom {
            moves: 5,
            ..ChatRoom::default()
        };
        let arguments = Postcard::encode(&chat_room_arguments::Replace {
            room: other.clone(),
        })
        .unwrap();
        let old: ChatRoom = Postcard::decode(&room.apply(2, &arguments).unwrap()).unwrap();
        assert_eq!(old.messages.len(), 1);
        assert_eq!(room, other);

        let arguments = Postcard::encode(&chat_room_arguments::Move {
            lobby: super::LobbyFull { capacity: 2 },
        })
        .unwrap();
        assert_eq!(
            room.apply(3, &arguments).unwrap(),
            Postcard::encode(&7u32).unwrap()
        );

        let schema = ChatRoom::schema();
        assert_eq!(schema.type_name, "ChatRoom");
        let texts: Vec<(&str, &str, &str)> = schema
            .methods
            .iter()
            .map(|method| {
                (
                    method.name.as_str(),
                    method.arguments.as_str(),
                    method.result.as_str(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            [
                ("message", "message: self::Message", "usize"),
                ("replace", "room: Self", "Self"),
                ("move", "lobby: super::LobbyFull", "u32"),
            ]
        );
        assert!(schema.retired_ids.is_empty());
    }
}
