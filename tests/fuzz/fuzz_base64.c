/*
 * fuzz_base64.c - server/base64.c against a reference decoder written
 * here from RFC 4648 and base64.h, independently of the table-driven one:
 *
 *   - the length is a multiple of 4;
 *   - every character is in the standard alphabet, except that the last
 *     quantum may end in "=" or "==" (never "=x", never '=' elsewhere);
 *   - non-zero bits under the padding are accepted (as Python does).
 *
 * Both must agree on validity, on the decoded length and on the bytes.
 * Then the input, taken as raw bytes, must survive encode and decode.
 */
#include <stdlib.h>
#include <string.h>

#include "base64.h"
#include "fuzz_common.h"

static int value_of(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* The reference: false when s is not valid; else out[0..*n). */
static bool ref_decode(const unsigned char *s, size_t len, unsigned char *out,
		       size_t *n)
{
	size_t pad = 0, o = 0;
	uint32_t acc = 0;
	int bits = 0;

	if (len % 4 != 0)
		return false;
	if (len > 0 && s[len - 1] == '=') {
		pad = 1;
		if (s[len - 2] == '=')
			pad = 2;
	}
	for (size_t i = 0; i < len - pad; i++) {
		int v = value_of(s[i]);
		if (v < 0)
			return false;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*n = o;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	unsigned char *ref = malloc(size / 4 * 3 + 1);
	unsigned char *got, *back;
	char *enc;
	size_t ref_n = 0, got_n = 0;
	bool ref_ok, len_ok, got_ok;

	FZ_CHECK(ref != NULL);
	ref_ok = ref_decode(data, size, ref, &ref_n);
	len_ok = srv_base64_decoded_len(s, size, &got_n);
	FZ_CHECK(len_ok == (size % 4 == 0));
	if (ref_ok)
		FZ_CHECK(len_ok && got_n == ref_n);
	got = malloc(len_ok && got_n ? got_n : 1);
	FZ_CHECK(got != NULL);
	got_ok = len_ok && srv_base64_decode(s, size, got);
	FZ_CHECK(got_ok == ref_ok);
	if (ref_ok)
		FZ_CHECK(memcmp(got, ref, ref_n) == 0);
	free(got);
	free(ref);

	/* Any bytes: encode, then decode gives them back. */
	enc = malloc(4 * ((size + 2) / 3) + 1);
	back = malloc(size ? size : 1);
	FZ_CHECK(enc != NULL && back != NULL);
	srv_base64_encode(data, size, enc);
	FZ_CHECK(strlen(enc) == 4 * ((size + 2) / 3));
	FZ_CHECK(srv_base64_decoded_len(enc, strlen(enc), &got_n));
	FZ_CHECK(got_n == size);
	FZ_CHECK(srv_base64_decode(enc, strlen(enc), back));
	FZ_CHECK(memcmp(back, data, size) == 0);
	free(enc);
	free(back);
	return 0;
}
