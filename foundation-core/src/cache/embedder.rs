//! Turning texts into vectors for the semantic cache.

/// Default dimensions of [`HashingEmbedder`]: 256 (1 KiB per stored vector).
pub const DEFAULT_DIMS: usize = 256;

/// Seeds that keep the three kinds of feature apart (a word and a 3-gram with the same letters
/// land in different buckets). Fixed forever: changing one changes every vector.
const SEED_CHAR3: u64 = 0x6368_6172_335f_7631; // "char3_v1"
const SEED_WORD: u64 = 0x776f_7264_315f_7631; // "word1_v1"
const SEED_BIGRAM: u64 = 0x776f_7264_325f_7631; // "word2_v1"
/// Weights of the features: whole words and word pairs say more than letter triples.
const WEIGHT_CHAR3: f32 = 0.5;
const WEIGHT_WORD: f32 = 1.0;
const WEIGHT_BIGRAM: f32 = 1.0;

/// Turns a text into a vector of [`dims`](Embedder::dims) numbers such that similar texts get
/// vectors with a high cosine similarity. The [`SemanticCache`](super::SemanticCache) compares
/// embeddings by dot product, so an embedder should return L2-normalized vectors (or all zeros
/// for a text with nothing in it, which then matches nothing).
pub trait Embedder: Send + Sync {
    /// The length of every vector this embedder returns.
    fn dims(&self) -> usize;
    /// The embedding of `text`: `dims()` numbers, L2-normalized.
    fn embed(&self, text: &str) -> Vec<f32>;
}

/// The built-in embedder: no network, no model. The text is lower-cased and cut into words
/// (letters and digits); its features are its character 3-grams (words padded with spaces),
/// its words and its pairs of adjacent words, each hashed with the stable hash ([`crate::hash`], xxh3) into one of `dims` buckets
/// with a sign from the hash (so collisions cancel out on average instead of adding up); the
/// vector is then L2-normalized.
///
/// Lexical, not semantic: "capital of France?" and "what is France's capital" score high,
/// "automobile" and "car" do not. The same text gives the same vector in every process, on every
/// machine and in every version (xxh3 with fixed seeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingEmbedder {
    dims: usize,
}

impl Default for HashingEmbedder {
    fn default() -> Self {
        HashingEmbedder { dims: DEFAULT_DIMS }
    }
}

impl HashingEmbedder {
    /// An embedder with `dims` dimensions (at least 1; 256 to 512 is a good range: fewer
    /// collide more, more cost more to store and compare).
    pub fn new(dims: usize) -> Self {
        HashingEmbedder { dims: dims.max(1) }
    }

    fn add(&self, vector: &mut [f32], feature: &[u8], seed: u64, weight: f32) {
        let h = crate::hash::stable_hash_with_seed(feature, seed);
        let bucket = (h % self.dims as u64) as usize;
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        vector[bucket] += sign * weight;
    }
}

impl Embedder for HashingEmbedder {
    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; self.dims];
        let lower = text.to_lowercase();
        let words: Vec<&str> =
            lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        let mut padded = String::new();
        for (i, word) in words.iter().enumerate() {
            self.add(&mut vector, word.as_bytes(), SEED_WORD, WEIGHT_WORD);
            if let Some(next) = words.get(i + 1) {
                let pair = format!("{word} {next}");
                self.add(&mut vector, pair.as_bytes(), SEED_BIGRAM, WEIGHT_BIGRAM);
            }
            padded.clear();
            padded.push(' ');
            padded.push_str(word);
            padded.push(' ');
            let chars: Vec<(usize, char)> = padded.char_indices().collect();
            for window in chars.windows(3) {
                let (start, end) = (window[0].0, window[2].0 + window[2].1.len_utf8());
                self.add(&mut vector, &padded.as_bytes()[start..end], SEED_CHAR3, WEIGHT_CHAR3);
            }
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

/// Cosine similarity of two vectors of the same length (0 if either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let (dot, na, nb) =
        a.iter().zip(b).fold((0.0f32, 0.0f32, 0.0f32), |(d, x, y), (p, q)| (d + p * q, x + p * p, y + q * q));
    if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na.sqrt() * nb.sqrt()) }
}
