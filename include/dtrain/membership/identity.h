// dtrain/membership/identity.h: compatibility header. Ed25519 identities moved to the
// crypto layer (dtrain/crypto/identity.h); these names keep membership code unchanged.
#pragma once

#include "dtrain/crypto/identity.h"

namespace dtrain::membership {

using crypto::identity;
using crypto::peer_id;
using crypto::random_bytes;
using crypto::signature;
using crypto::verify;

}  // namespace dtrain::membership
