//! Code generation for DSSS shared objects: `#[dsss::shared_object]` on the type that holds an
//! object's state and `#[dsss::methods]` on its impl block. Applications use them through the
//! `dsss` crate, which re-exports both; the generated code names `::dsss` items only.
//!
//! The crate reads its input in `parse`, checks the rules of a shared object in `validate`
//! (every violation is reported at its own span, in one build), and writes code in
//! `generate` and `shared_object`. `types` renders the canonical type texts of the
//! schema, which are compared across builds and so must not depend on token spacing.
#![deny(missing_docs)]

mod generate;
mod names;
mod parse;
mod shared_object;
mod types;
mod validate;

use proc_macro::TokenStream;
use quote::quote;

/// Marks the type that holds a shared object's state.
///
/// ```text
/// #[dsss::shared_object]
/// #[derive(Default, serde::Serialize, serde::Deserialize)]
/// pub struct Lobby { seats: BTreeMap<String, u32>, capacity: u32 }
/// ```
///
/// Re-emits the type and adds `LobbyHandle` (the type's name followed by `Handle`, with the
/// type's visibility): the handle `dsss::Client::open` returns. It derefs to
/// `dsss::Object<Lobby>` (reads, `sync`, the object's name), is `Clone`, and gets one async
/// method per mutating method from `#[dsss::methods]`. The type must be `Default` (the state
/// of a new object) and serde-encodable (checkpoints); a compile error on the type's name says
/// so otherwise.
#[proc_macro_attribute]
pub fn shared_object(attribute: TokenStream, item: TokenStream) -> TokenStream {
    shared_object::expand(attribute.into(), item.into()).into()
}

/// Implements `dsss::SharedObject` from the type's impl block.
///
/// ```text
/// #[dsss::methods(retired = [3])]        // optional: ids of methods removed for good
/// impl Lobby {
///     #[mutate(id = 1)]                  // stable id, from 1: part of the log format
///     pub fn join(&mut self, player: String) -> Result<u32, LobbyFull> { ... }
///     #[mutate(id = 2, codec = "json")]  // "postcard" (the default), "json", or a path to a
///     pub fn leave(&mut self, player: String) { ... }  // type that implements dsss::Codec
///     pub fn free_seats(&self) -> u32 { ... }          // a getter: use it in read(|l| ...)
/// }
/// ```
///
/// Generates, next to the impl block (whose `#[mutate]` attributes it removes):
/// - a private module `lobby_arguments` (the type's name in snake case, then `_arguments`)
///   with one serde struct per mutating method, named after it in upper camel case
///   (`lobby_arguments::Join { player: String }`): the bytes of a call in the log;
/// - `impl dsss::SharedObject for Lobby`: the schema (ids, names, canonical argument and
///   result texts, codec names, retired ids), dispatch of a call by id with the method's
///   codec, the state's encoding with `dsss::Postcard`, and the handle;
/// - `impl LobbyHandle { pub async fn join(&self, player: String) -> Result<Result<u32,
///   LobbyFull>, dsss::CallError> }`, one method per mutating method.
///
/// Mutating methods take `&mut self`, are neither generic nor async, and take and return
/// owned serde-encodable values; getters take `&self`. Ids are unique, from 1, and never
/// listed in `retired`. Each broken rule is a compile error where it can be fixed.
#[proc_macro_attribute]
pub fn methods(attribute: TokenStream, item: TokenStream) -> TokenStream {
    expand_methods(attribute.into(), item.into()).into()
}

fn expand_methods(
    attribute: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let mut errors = parse::Errors::default();
    let options = parse::methods_options(attribute).unwrap_or_else(|error| {
        errors.push(error);
        parse::MethodsOptions::default()
    });
    let item_impl = match syn::parse2::<syn::Item>(item.clone()) {
        Ok(syn::Item::Impl(item_impl)) => item_impl,
        Ok(other) => {
            errors.spanned(
                &other,
                "#[dsss::methods] goes on the impl block of a shared object's type, such as \
                 `impl Lobby { ... }`",
            );
            let compile_errors = errors.into_compile_errors();
            return quote!(#compile_errors #item);
        }
        Err(error) => {
            errors.push(error);
            let compile_errors = errors.into_compile_errors();
            return quote!(#compile_errors #item);
        }
    };
    let object = match parse::object_impl(item_impl, &mut errors) {
        Ok(object) => object,
        Err(item_impl) => {
            let compile_errors = errors.into_compile_errors();
            return quote!(#compile_errors #item_impl);
        }
    };
    validate::check(&object, &options, &mut errors);
    match errors.into_compile_errors() {
        // The impl block is still emitted (without `#[mutate]`), with a `SharedObject` impl of
        // no mutating methods, so that the only errors are the ones above and not every use of
        // the type as a shared object.
        Some(compile_errors) => {
            let fallback = generate::expand(&object, &[], &options);
            quote!(#compile_errors #fallback)
        }
        None => generate::expand(&object, &object.methods, &options),
    }
}
