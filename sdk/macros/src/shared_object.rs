//! `#[dsss::shared_object]`: the handle type of a shared object's type, and the check that the
//! type can be a shared object's state.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{Generics, Ident, Item, Visibility};

use crate::names;
use crate::parse::Errors;

/// Re-emits the type and adds its handle, or reports why the item cannot be a shared object.
pub fn expand(attribute: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    if !attribute.is_empty() {
        errors.spanned(
            &attribute,
            "#[dsss::shared_object] takes no options: the methods and their ids go on the impl \
             block, under #[dsss::methods]",
        );
    }
    let parsed = match syn::parse2::<Item>(item.clone()) {
        Ok(parsed) => parsed,
        Err(error) => {
            errors.push(error);
            return with_errors(errors, item);
        }
    };
    let Some((type_name, visibility, generics)) = type_parts(&parsed) else {
        errors.spanned(
            &parsed,
            "#[dsss::shared_object] goes on the struct or enum that holds the shared object's \
             state",
        );
        return with_errors(errors, item);
    };
    if !generics.params.is_empty() || generics.where_clause.is_some() {
        errors.spanned(
            generics,
            "a shared object's type cannot be generic: the schema in the object's log names one \
             concrete type",
        );
    }
    if let Some(compile_errors) = errors.into_compile_errors() {
        return quote!(#compile_errors #item);
    }
    let handle = handle(type_name, visibility);
    quote! {
        #parsed
        #handle
    }
}

fn with_errors(errors: Errors, item: TokenStream) -> TokenStream {
    let compile_errors = errors.into_compile_errors();
    quote!(#compile_errors #item)
}

fn type_parts(item: &Item) -> Option<(&Ident, &Visibility, &Generics)> {
    match item {
        Item::Struct(structure) => Some((&structure.ident, &structure.vis, &structure.generics)),
        Item::Enum(enumeration) => {
            Some((&enumeration.ident, &enumeration.vis, &enumeration.generics))
        }
        _ => None,
    }
}

fn handle(type_name: &Ident, visibility: &Visibility) -> TokenStream {
    let handle = names::handle(type_name);
    let name = type_name.unraw().to_string();
    let handle_documentation = format!(
        " The handle of an opened shared `{name}`, which `dsss::Client::open` returns. Each \
         mutating method of `{name}` is an async method here that orders the call in the \
         object's log and returns the method's result; through `Deref` to `dsss::Object` it \
         reads the local copy (`read`), waits for every earlier call (`sync`), and gives the \
         object's name and applied position. Cheap to clone."
    );
    // Spanned on the type's name: a state type that is not `Default + Serialize +
    // DeserializeOwned` is reported there, before anything else uses it.
    let state_check = quote_spanned! {type_name.span()=>
        let _: fn() = state_of_a_shared_object_must_be_default_and_serde_encodable::<#type_name>;
    };
    quote! {
        #[doc = #handle_documentation]
        #visibility struct #handle(::dsss::Object<#type_name>);

        impl ::core::clone::Clone for #handle {
            fn clone(&self) -> Self {
                #handle(::core::clone::Clone::clone(&self.0))
            }
        }

        impl ::core::ops::Deref for #handle {
            type Target = ::dsss::Object<#type_name>;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl ::core::convert::From<::dsss::Object<#type_name>> for #handle {
            fn from(object: ::dsss::Object<#type_name>) -> Self {
                #handle(object)
            }
        }

        const _: () = {
            fn state_of_a_shared_object_must_be_default_and_serde_encodable<
                T: ::core::default::Default
                    + ::dsss::serde::Serialize
                    + ::dsss::serde::de::DeserializeOwned,
            >() {
            }
            #state_check
        };
    }
}
