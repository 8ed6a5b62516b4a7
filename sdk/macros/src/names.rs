//! The names of generated items, derived from the names the user wrote.

use proc_macro2::Ident;
use quote::format_ident;
use syn::ext::IdentExt;

/// Methods the handle reaches through `Deref` to `dsss::Object` (and the traits the handle
/// implements). A mutating method with one of these names would become an inherent method of
/// the handle and hide the one the application expects, so the name is refused.
pub const HANDLE_METHOD_NAMES: &[&str] = &[
    "call_raw",
    "read",
    "sync",
    "name",
    "position",
    "state_hash",
    "clone",
    "deref",
];

/// The handle type of a shared object type: `Lobby` -> `LobbyHandle`, spanned on the type's
/// name so that a missing `#[dsss::shared_object]` is reported there.
pub fn handle(type_name: &Ident) -> Ident {
    format_ident!("{}Handle", type_name.unraw())
}

/// The module that holds the argument structs: `ChatRoom` -> `chat_room_arguments`.
pub fn arguments_module(type_name: &Ident) -> Ident {
    format_ident!(
        "{}_arguments",
        snake_case(&type_name.unraw().to_string()),
        span = type_name.span()
    )
}

/// The argument struct of a method: `join_table` -> `JoinTable`.
pub fn arguments_struct(method: &Ident) -> Ident {
    format_ident!(
        "{}",
        upper_camel_case(&method.unraw().to_string()),
        span = method.span()
    )
}

/// `join_table` -> `JoinTable`; empty pieces between underscores are dropped.
pub fn upper_camel_case(name: &str) -> String {
    name.split('_')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let mut characters = piece.chars();
            match characters.next() {
                Some(first) => first.to_uppercase().chain(characters).collect(),
                None => String::new(),
            }
        })
        .collect()
}

/// `ChatRoom` -> `chat_room`, `HTTPServer` -> `http_server`, `Lobby2` -> `lobby2`.
pub fn snake_case(name: &str) -> String {
    let characters: Vec<char> = name.chars().collect();
    let mut snake = String::with_capacity(name.len() + 4);
    for (index, &character) in characters.iter().enumerate() {
        if character.is_uppercase() {
            let previous = index.checked_sub(1).map(|before| characters[before]);
            let next = characters.get(index + 1);
            // A word starts at an upper-case letter after a lower-case letter or digit, and at
            // the last capital of an acronym that a lower-case letter follows (HTTPServer).
            let starts_word = match previous {
                Some(before) if before.is_lowercase() || before.is_ascii_digit() => true,
                Some(before) if before.is_uppercase() => next.is_some_and(|c| c.is_lowercase()),
                _ => false,
            };
            if starts_word {
                snake.push('_');
            }
            snake.extend(character.to_lowercase());
        } else {
            snake.push(character);
        }
    }
    snake
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_become_struct_names() {
        assert_eq!(upper_camel_case("join"), "Join");
        assert_eq!(upper_camel_case("join_table"), "JoinTable");
        assert_eq!(upper_camel_case("_set__seat_"), "SetSeat");
        assert_eq!(upper_camel_case("move2"), "Move2");
    }

    #[test]
    fn type_names_become_module_names() {
        assert_eq!(snake_case("Lobby"), "lobby");
        assert_eq!(snake_case("ChatRoom"), "chat_room");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(snake_case("Lobby2Room"), "lobby2_room");
        assert_eq!(snake_case("lobby"), "lobby");
    }

    #[test]
    fn raw_identifiers_lose_their_prefix() {
        let method: Ident = syn::parse_str("r#match").unwrap();
        assert_eq!(arguments_struct(&method).to_string(), "Match");
        let type_name: Ident = syn::parse_str("Lobby").unwrap();
        assert_eq!(handle(&type_name).to_string(), "LobbyHandle");
        assert_eq!(arguments_module(&type_name).to_string(), "lobby_arguments");
    }
}
