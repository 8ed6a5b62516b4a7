//! The code `#[dsss::methods]` writes for a validated impl block: the arguments module, the
//! `dsss::SharedObject` impl, the handle's methods and compile-time assertions.
//!
//! Generated code names everything by absolute path (`::dsss::...`, `::core::...`, `::std::...`)
//! so that it means the same whatever the user's module imports or shadows.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::{FnArg, Ident, Pat, ReturnType, Type};

use crate::names;
use crate::parse::{CodecChoice, MethodsOptions, MutatingMethod, ObjectImpl};
use crate::types;

/// One mutating method, in the shapes the generated code needs.
struct Method<'a> {
    source: &'a MutatingMethod,
    /// The method's name without `r#`, as the schema and errors show it.
    name: String,
    /// The arguments struct inside the arguments module.
    struct_name: Ident,
    /// The argument names (without `mut`) and types, in order.
    arguments: Vec<(Ident, &'a Type)>,
    /// The result type, `()` when the method returns nothing.
    result: Type,
    /// The codec type.
    codec: TokenStream,
}

impl<'a> Method<'a> {
    fn new(source: &'a MutatingMethod) -> Method<'a> {
        let signature = &source.signature;
        let arguments = signature
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Typed(argument) => match &*argument.pat {
                    Pat::Ident(binding) => Some((binding.ident.clone(), &*argument.ty)),
                    _ => None,
                },
                FnArg::Receiver(_) => None,
            })
            .collect();
        let result = match &signature.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        let codec = match &source.codec {
            CodecChoice::Postcard => quote!(::dsss::Postcard),
            CodecChoice::Json => quote!(::dsss::Json),
            CodecChoice::Path(path) => quote!(#path),
        };
        Method {
            source,
            name: signature.ident.unraw().to_string(),
            struct_name: names::arguments_struct(&signature.ident),
            arguments,
            result,
            codec,
        }
    }

    fn id(&self) -> Literal {
        Literal::u32_unsuffixed(self.source.id.value)
    }

    fn argument_names(&self) -> impl Iterator<Item = &Ident> {
        self.arguments.iter().map(|(name, _)| name)
    }

    /// `player: String, pairs: Vec<(u32, String)>`.
    fn arguments_text(&self) -> String {
        self.arguments
            .iter()
            .map(|(name, ty)| format!("{}: {}", name.unraw(), types::canonical(ty)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything `#[dsss::methods]` emits for an impl block, with the given mutating methods:
/// all of them when the block is valid, none when errors are reported (so that the type still
/// implements `dsss::SharedObject` and the only errors are the ones that name the mistakes).
pub fn expand(
    object: &ObjectImpl,
    mutating: &[MutatingMethod],
    options: &MethodsOptions,
) -> TokenStream {
    let mut methods: Vec<Method> = mutating.iter().map(Method::new).collect();
    // The schema lists methods in increasing id order; dispatch and the handle follow it too.
    methods.sort_by_key(|method| method.source.id.value);
    let item = &object.item;
    let arguments_module = arguments_module(object, &methods);
    let shared_object = shared_object_impl(object, options, &methods);
    let handle = handle_impl(object, &methods);
    let assertions = assertions(object, options, &methods);
    // The assertions come first: the compiler then reports a type that is not serde-encodable
    // at that type before it reports the uses of it in the generated code.
    quote! {
        #assertions
        #item
        #arguments_module
        #shared_object
        #handle
    }
}

fn arguments_module(object: &ObjectImpl, methods: &[Method]) -> TokenStream {
    let type_name = object.type_name.unraw().to_string();
    let module = names::arguments_module(&object.type_name);
    let shadowed: Vec<Ident> = methods
        .iter()
        .map(|method| method.struct_name.clone())
        .collect();
    let self_type = types::into_child_module(&object.self_type, &shadowed);
    let module_documentation = format!(
        " The arguments of the mutating methods of `{type_name}`, one struct per method, as \
         the method's codec encodes them in the object's log."
    );
    let structs = methods.iter().map(|method| {
        let struct_name = &method.struct_name;
        let documentation = format!(
            " The arguments of `{type_name}::{}` (method id {}), as its codec encodes them in \
             the object's log.",
            method.name, method.source.id.value
        );
        let fields = method.arguments.iter().map(|(name, ty)| {
            let ty = types::replace_self(&types::into_child_module(ty, &shadowed), &self_type);
            let field_documentation = format!(" The argument `{}`.", name.unraw());
            quote! {
                #[doc = #field_documentation]
                pub #name: #ty,
            }
        });
        quote! {
            #[doc = #documentation]
            #[derive(::dsss::serde::Serialize, ::dsss::serde::Deserialize)]
            #[serde(crate = "::dsss::serde")]
            pub struct #struct_name {
                #(#fields)*
            }
        }
    });
    quote! {
        #[doc = #module_documentation]
        mod #module {
            // The argument types are written in the parent module, so its names are needed
            // here; a method whose arguments use only the prelude leaves the import unused.
            #[allow(unused_imports)]
            use super::*;

            #(#structs)*
        }
    }
}

fn shared_object_impl(
    object: &ObjectImpl,
    options: &MethodsOptions,
    methods: &[Method],
) -> TokenStream {
    let self_type = &object.self_type;
    let type_name = object.type_name.unraw().to_string();
    let handle = handle_type(object);
    let schema_methods = methods.iter().map(|method| {
        let id = method.id();
        let name = &method.name;
        let arguments = method.arguments_text();
        let result = types::canonical_result(&method.source.signature.output);
        let codec = &method.codec;
        quote! {
            ::dsss::MethodSchema {
                id: #id,
                name: ::std::string::String::from(#name),
                arguments: ::std::string::String::from(#arguments),
                result: ::std::string::String::from(#result),
                codec: ::std::string::String::from(<#codec as ::dsss::Codec>::NAME),
            }
        }
    });
    let mut retired: Vec<u32> = options.retired.iter().map(|id| id.value).collect();
    retired.sort_unstable();
    let retired = retired.into_iter().map(Literal::u32_unsuffixed);
    let apply_body = apply_body(object, methods);
    quote! {
        impl ::dsss::SharedObject for #self_type {
            type Handle = #handle;

            fn schema() -> &'static ::dsss::ObjectSchema {
                static SCHEMA: ::std::sync::OnceLock<::dsss::ObjectSchema> =
                    ::std::sync::OnceLock::new();
                SCHEMA.get_or_init(|| ::dsss::ObjectSchema {
                    type_name: ::std::string::String::from(#type_name),
                    methods: ::std::vec![#(#schema_methods),*],
                    retired_ids: ::std::vec![#(#retired),*],
                })
            }

            fn apply(
                &mut self,
                method_id: u32,
                arguments: &[u8],
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::dsss::MethodError> {
                #apply_body
            }

            fn encode_state(
                &self,
            ) -> ::core::result::Result<::std::vec::Vec<u8>, ::dsss::CodecError> {
                <::dsss::Postcard as ::dsss::Codec>::encode(self)
            }

            fn decode_state(bytes: &[u8]) -> ::core::result::Result<Self, ::dsss::CodecError> {
                <::dsss::Postcard as ::dsss::Codec>::decode(bytes)
            }

            fn handle(object: ::dsss::Object<Self>) -> Self::Handle {
                <#handle as ::core::convert::From<::dsss::Object<Self>>>::from(object)
            }
        }
    }
}

/// Decodes the arguments struct, calls the method, encodes its result. Panics of the method
/// are left to the replica, which restores the state and skips the call in every copy.
fn apply_body(object: &ObjectImpl, methods: &[Method]) -> TokenStream {
    let type_name = object.type_name.unraw().to_string();
    let unknown = quote! {
        ::core::result::Result::Err(::dsss::MethodError::UnknownMethod {
            type_name: #type_name,
            method_id,
        })
    };
    if methods.is_empty() {
        return quote! {
            let _ = arguments;
            #unknown
        };
    }
    let module = names::arguments_module(&object.type_name);
    let arms = methods.iter().map(|method| {
        let id = method.id();
        let name = &method.name;
        let struct_name = &method.struct_name;
        let codec = &method.codec;
        let method_ident = &method.source.signature.ident;
        let argument_names: Vec<&Ident> = method.argument_names().collect();
        let result_span = types::span_of(&method.result);
        // Spanned on the result type, so that a result that does not encode is reported there.
        let encode = quote_spanned! {result_span=>
            <#codec as ::dsss::Codec>::encode(&Self::#method_ident(self, #(#argument_names),*))
        };
        quote! {
            #id => {
                let #module::#struct_name { #(#argument_names),* } =
                    <#codec as ::dsss::Codec>::decode::<#module::#struct_name>(arguments)
                        .map_err(|source| ::dsss::MethodError::Arguments {
                            type_name: #type_name,
                            method: #name,
                            source,
                        })?;
                #encode.map_err(|source| ::dsss::MethodError::Result {
                    type_name: #type_name,
                    method: #name,
                    source,
                })
            }
        }
    });
    quote! {
        match method_id {
            #(#arms)*
            _ => #unknown,
        }
    }
}

/// `LobbyHandle`, or `game::LobbyHandle` for `impl game::Lobby`.
fn handle_type(object: &ObjectImpl) -> TokenStream {
    let handle = names::handle(&object.type_name);
    match &object.self_type {
        Type::Path(path) => {
            let leading = &path.path.leading_colon;
            let prefix = path
                .path
                .segments
                .iter()
                .take(path.path.segments.len().saturating_sub(1))
                .map(|segment| &segment.ident);
            quote!(#leading #(#prefix ::)* #handle)
        }
        _ => quote!(#handle),
    }
}

fn handle_impl(object: &ObjectImpl, methods: &[Method]) -> TokenStream {
    let handle = handle_type(object);
    let type_name = object.type_name.unraw().to_string();
    let module = names::arguments_module(&object.type_name);
    let self_type = &object.self_type;
    let handle_methods = methods.iter().map(|method| {
        let visibility = &method.source.visibility;
        let user_documentation = &method.source.documentation;
        let separator = if user_documentation.is_empty() {
            quote!()
        } else {
            quote!(#[doc = ""])
        };
        let documentation = format!(
            " Orders a call of `{type_name}::{}` (method id {}) in the object's log, waits \
             until the local copy has applied it, and returns the method's result from there. \
             Fails with `dsss::CallError` when the call could not be ordered or failed in \
             every copy alike.",
            method.name, method.source.id.value
        );
        let method_ident = &method.source.signature.ident;
        let id = method.id();
        let codec = &method.codec;
        let struct_name = &method.struct_name;
        let argument_names: Vec<&Ident> = method.argument_names().collect();
        let parameters = method.arguments.iter().map(|(name, ty)| {
            let ty = types::replace_self(ty, self_type);
            quote!(#name: #ty)
        });
        let result = types::replace_self(&method.result, self_type);
        let result_span = types::span_of(&method.result);
        let decode = quote_spanned! {result_span=>
            <#codec as ::dsss::Codec>::decode::<#result>(&result)
        };
        quote! {
            #(#user_documentation)*
            #separator
            #[doc = #documentation]
            #visibility async fn #method_ident(
                &self,
                #(#parameters),*
            ) -> ::core::result::Result<#result, ::dsss::CallError> {
                let encoded = <#codec as ::dsss::Codec>::encode(
                    &#module::#struct_name { #(#argument_names),* },
                )?;
                let result = ::core::ops::Deref::deref(self).call_raw(#id, encoded).await?;
                ::core::result::Result::Ok(#decode?)
            }
        }
    });
    quote! {
        impl #handle {
            #(#handle_methods)*
        }
    }
}

/// Compile-time checks: every argument and result type is serde-encodable (reported on the
/// type), the codec names and schema texts fit the bounds that replicas enforce when they
/// decode the schema record, and no id collides with the reserved schema id.
fn assertions(object: &ObjectImpl, options: &MethodsOptions, methods: &[Method]) -> TokenStream {
    let self_type = &object.self_type;
    let encodable = methods.iter().flat_map(|method| {
        method
            .arguments
            .iter()
            .map(|(_, ty)| *ty)
            .chain(std::iter::once(&method.result))
            .map(|ty| {
                let span = types::span_of(ty);
                let ty = types::replace_self(ty, self_type);
                quote_spanned! {span=>
                    let _: fn() =
                        argument_or_result_of_a_mutating_method_must_be_serde_encodable::<#ty>;
                }
            })
    });
    let type_name = object.type_name.unraw().to_string();
    let methods_count = methods.len();
    let methods_message =
        format!("{type_name} declares more mutating methods than dsss::schema::METHODS_MAX");
    let retired_count = options.retired.len();
    let retired_message = format!("{type_name} retires more ids than dsss::schema::METHODS_MAX");
    let type_name_bytes = type_name.len();
    let type_name_message =
        format!("the name {type_name} is longer than dsss::schema::SCHEMA_TEXT_BYTES_MAX");
    let bounds = methods.iter().map(|method| {
        let text_bytes = [
            method.name.len(),
            method.arguments_text().len(),
            types::canonical_result(&method.source.signature.output).len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        let text_message = format!(
            "the name, arguments or result of {type_name}::{} are longer than \
             dsss::schema::SCHEMA_TEXT_BYTES_MAX",
            method.name
        );
        let codec = &method.codec;
        let codec_message = format!(
            "the codec name of {type_name}::{} is longer than \
             dsss::schema::SCHEMA_TEXT_BYTES_MAX",
            method.name
        );
        let id = method.id();
        let id_message = format!(
            "{type_name}::{} uses the id that dsss reserves for schema records",
            method.name
        );
        quote! {
            ::core::assert!(#text_bytes <= ::dsss::schema::SCHEMA_TEXT_BYTES_MAX, #text_message);
            ::core::assert!(
                <#codec as ::dsss::Codec>::NAME.len() <= ::dsss::schema::SCHEMA_TEXT_BYTES_MAX,
                #codec_message
            );
            ::core::assert!(#id != ::dsss::object::SCHEMA_METHOD_ID, #id_message);
        }
    });
    quote! {
        const _: () = {
            fn argument_or_result_of_a_mutating_method_must_be_serde_encodable<
                T: ::dsss::serde::Serialize + ::dsss::serde::de::DeserializeOwned,
            >() {
            }
            #(#encodable)*
            ::core::assert!(#methods_count <= ::dsss::schema::METHODS_MAX, #methods_message);
            ::core::assert!(#retired_count <= ::dsss::schema::METHODS_MAX, #retired_message);
            ::core::assert!(
                #type_name_bytes <= ::dsss::schema::SCHEMA_TEXT_BYTES_MAX,
                #type_name_message
            );
            #(#bounds)*
        };
    }
}
