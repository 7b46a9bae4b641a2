//! API keys: configured as BLAKE3 hashes, the presented key is hashed and compared in constant
//! time against every configured hash. A request's [`Principal`] is its tenant and role.

use crate::error::ApiError;
use crate::{ApiKeyConfig, Role};
use actix_web::http::header;
use actix_web::HttpRequest;
use giftcard_core::{Caller, ClientId};

/// The configured keys, parsed once.
pub struct KeyTable {
    keys: Vec<(blake3::Hash, Principal)>,
}

/// Who is calling.
#[derive(Clone, Debug)]
pub struct Principal {
    pub client: String,
    pub role: Role,
    /// Merchants: the brands it accepts (None: every brand, for every other role too).
    pub brands: Option<std::sync::Arc<[String]>>,
    /// Funding keys: the most one deposit, and one day's deposits, may credit.
    pub deposit_limit: crate::limits::DepositLimit,
}

impl Principal {
    /// The engine's view of the caller: admins may act on any tenant's objects.
    pub fn caller(&self) -> Caller {
        Caller {
            client: ClientId::new(&self.client),
            admin: self.role == Role::Admin,
        }
    }

    /// Refuses the request unless the key has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// Hashes of the development keys shipped in `config/default.toml`.
pub const DEV_KEY_HASHES: &[&str] = &[
    "6e8e8d11c745ceb09581ae83cb595bdc35d040023d09df96db483c3e69929451",
    "28766a9b3aceda6326f9a66ededc39b2cd7ff3b71f04815b9bf2569a87e17255",
    "14378335392a41b96415612457c94268f835b27e0e1c8f6f9b196b97de60fc2c",
    "631a8b198beb6f96613df328e7e61164db9e9c722b79e8da0d69eab5f7114628",
    "4fcbc6f8b3c4bc6166d94d06bccddedc52936a1437508e4dd066e436cf06109f",
    "2359303d236ff7c2d48a551910762c7cfb2f3725e6b5bfe2267891d273127c8b",
    "ab44f5c439ceb476599cb4cac4f46df698f18d4fde579f5e8d6ddd81df491139",
    "27cf53ef61656c980b8d34ef5fa7c68c213a39f5753faad96fb98254eff98e6f",
    "b1e21e33c7db29e6f5862c382325137b98b462779dea2f21680541ad000ec903",
];

impl KeyTable {
    /// Parses the configured hashes; a malformed one is a configuration error.
    pub fn new(cfg: &[ApiKeyConfig]) -> Result<KeyTable, String> {
        let keys = cfg
            .iter()
            .map(|k| {
                // `~` separates a wallet's namespace (its client) from the client's own id.
                if !crate::valid_client_id(&k.client) {
                    return Err(format!(
                        "api key client {:?} is empty or has `~` or a control character",
                        k.client
                    ));
                }
                let hash = blake3::Hash::from_hex(k.key_hash.trim()).map_err(|_| {
                    format!("api key hash of {} is not 64 hex characters", k.client)
                })?;
                let brands = match k.role {
                    Role::Merchant if k.brands.iter().any(|b| b == "*") => None,
                    Role::Merchant if k.brands.is_empty() => {
                        return Err(format!(
                            "merchant key of {} lists no brands (\"*\" is every brand)",
                            k.client
                        ))
                    }
                    Role::Merchant => Some(k.brands.clone().into()),
                    _ if !k.brands.is_empty() => {
                        return Err(format!("brands are for merchant keys ({})", k.client))
                    }
                    _ => None,
                };
                let deposit_limit = crate::limits::DepositLimit::from_config(
                    &k.client,
                    k.role == Role::Funding,
                    k.deposit_max_minor,
                    k.deposits_per_day_max_minor,
                    &k.deposit_currencies,
                )?;
                let who = Principal {
                    client: k.client.clone(),
                    role: k.role,
                    brands,
                    deposit_limit,
                };
                Ok((hash, who))
            })
            .collect::<Result<_, String>>()?;
        Ok(KeyTable { keys })
    }

    /// Whether any shipped development key is configured.
    pub fn has_dev_keys(&self) -> bool {
        self.keys
            .iter()
            .any(|(h, _)| DEV_KEY_HASHES.contains(&h.to_hex().as_str()))
    }

    /// The principal of a request's `Authorization: Bearer` key.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<Principal, ApiError> {
        let value = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthenticated)?;
        let key = value
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthenticated)?
            .trim();
        if key.is_empty() || key.len() > 256 {
            return Err(ApiError::Unauthenticated);
        }
        let presented = blake3::hash(key.as_bytes());
        // `blake3::Hash` compares in constant time; every key is compared, so timing does not
        // reveal which (if any) matched.
        let mut found = None;
        for (hash, who) in &self.keys {
            if *hash == presented {
                found = Some(who);
            }
        }
        let found = found.cloned();
        found.ok_or(ApiError::Unauthenticated)
    }
}
