/* kb_keys.h - a user's API keys: create, list (with this cycle's usage), usage
 * by day, rename, revoke (API.md §5.5, §7.8, §7.11, §7.16).
 *
 * Every statement is scoped by the user id, so a user can never see, change or
 * revoke another user's key: someone else's key id is simply not found. Only
 * the SHA-256 and the display prefix of a key are stored; the raw key exists
 * once, in kb_keys_create's output. Like kb_markets.h, each function writes
 * its response fields into an open JSON object writer and writes nothing when
 * it fails (KB_E_UNAVAILABLE, KB_E_INTERNAL, or the code named below).
 */
#ifndef KB_KEYS_H
#define KB_KEYS_H

#include <stdbool.h>

#include "kb_auth.h"
#include "kb_db.h"
#include "kb_json.h"

/*
 * Create a key for user u (creating a token user's users row on first use,
 * kb_user_ensure) and write "data": the key object with the raw key after
 * "id". *prefix (arena-owned) is its display prefix, for the log line.
 * KB_E_INVALID_API_KEY when u cannot own a key (a token user whose email
 * belongs to another account).
 */
kb_err kb_keys_create(kb_db *db, kb_arena *a, const kb_user *u, const char *name,
                      const char *key_type, kb_jw *w, const char **prefix);

/*
 * Write "data": the user's live keys, newest first; with usage, each with
 * "credits_used" in the cycle metering would see now; with start and end
 * (UTC dates "YYYY-MM-DD", both or neither) also "days": credits and requests
 * per day, key (revoked ones too) and route.
 */
kb_err kb_keys_list(kb_db *db, kb_arena *a, const char *user_id, bool usage, const char *start,
                    const char *end, kb_jw *w);

/* Rename or retype (NULL = keep) the live key key_id of the user and write
 * "data": the key. KB_E_KEY_NOT_FOUND when no live key of this user has
 * that id (key_id must be a UUID). */
kb_err kb_keys_update(kb_db *db, kb_arena *a, const char *user_id, const char *key_id,
                      const char *name, const char *key_type, kb_jw *w);

/* Revoke the live key key_id of the user (writes nothing). KB_E_KEY_NOT_FOUND
 * as for kb_keys_update. */
kb_err kb_keys_revoke(kb_db *db, kb_arena *a, const char *user_id, const char *key_id);

#endif
