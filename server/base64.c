/*
 * base64.c - strict base64 (see base64.h). Decoding is table driven and
 * checks every character: vectors arrive here straight from clients.
 */
#include "base64.h"

#include <pthread.h>
#include <stdint.h>

static const char alphabet[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63, 64 for '=', 65 for anything else. */
static unsigned char decode_table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void build_table(void)
{
	for (int i = 0; i < 256; i++)
		decode_table[i] = 65;
	for (int i = 0; i < 64; i++)
		decode_table[(unsigned char)alphabet[i]] = (unsigned char)i;
	decode_table['='] = 64;
}

static const unsigned char *table(void)
{
	pthread_once(&table_once, build_table);
	return decode_table;
}

bool srv_base64_decoded_len(const char *s, size_t len, size_t *out)
{
	size_t pad = 0;

	if (len % 4 != 0)
		return false;
	if (len >= 1 && s[len - 1] == '=')
		pad++;
	if (len >= 2 && s[len - 2] == '=')
		pad++;
	*out = len / 4 * 3 - pad;
	return true;
}

bool srv_base64_decode(const char *s, size_t len, unsigned char *out)
{
	const unsigned char *t = table();
	size_t o = 0;

	if (len % 4 != 0)
		return false;
	for (size_t i = 0; i < len; i += 4) {
		unsigned a = t[(unsigned char)s[i]];
		unsigned b = t[(unsigned char)s[i + 1]];
		unsigned c = t[(unsigned char)s[i + 2]];
		unsigned d = t[(unsigned char)s[i + 3]];
		bool last = i + 4 == len;

		if (a > 63 || b > 63)
			return false;
		if (c == 64 || d == 64) {
			/* Padding: only in the final quantum, "x=" or "==". */
			if (!last || (c == 64 && d != 64) || c == 65 || d == 65)
				return false;
			out[o++] = (unsigned char)(a << 2 | b >> 4);
			if (c != 64)
				out[o++] =
					(unsigned char)((b & 15) << 4 | c >> 2);
			continue;
		}
		if (c > 63 || d > 63)
			return false;
		out[o++] = (unsigned char)(a << 2 | b >> 4);
		out[o++] = (unsigned char)((b & 15) << 4 | c >> 2);
		out[o++] = (unsigned char)((c & 3) << 6 | d);
	}
	return true;
}

void srv_base64_encode(const unsigned char *in, size_t n, char *out)
{
	size_t o = 0, i = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
			     in[i + 2];
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = alphabet[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = '=';
		out[o++] = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = alphabet[v >> 18];
		out[o++] = alphabet[(v >> 12) & 63];
		out[o++] = alphabet[(v >> 6) & 63];
		out[o++] = '=';
	}
	out[o] = '\0';
}
