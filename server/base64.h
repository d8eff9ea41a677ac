/*
 * base64.h - standard base64 (RFC 4648, with padding), as numpy clients
 * send float32 vectors: base64.b64encode(a.astype('<f4').tobytes()).
 */
#ifndef SRV_BASE64_H
#define SRV_BASE64_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes that decoding len characters yields; false if len is not valid. */
bool srv_base64_decoded_len(const char *s, size_t len, size_t *out);
/*
 * Decodes s[0..len) into out (srv_base64_decoded_len bytes). False on any
 * character outside the alphabet or misplaced padding; out is then
 * unspecified.
 */
bool srv_base64_decode(const char *s, size_t len, unsigned char *out);
/* Encodes n bytes; out needs 4 * ((n + 2) / 3) + 1 bytes (NUL-ended). */
void srv_base64_encode(const unsigned char *in, size_t n, char *out);

#endif
