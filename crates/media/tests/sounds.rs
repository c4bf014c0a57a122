//! Asterisk's own prompts (Debian's `asterisk-core-sounds-en-wav`, installed by `.ci/run`) read
//! as 8 kHz 16-bit mono WAV with speech in them.

use starling_media::audio_file::{read, Format};

#[test]
fn asterisk_prompts_read_as_8khz_wav() {
    let dir = std::path::Path::new("/usr/share/asterisk/sounds/en_US_f_Allison");
    for prompt in ["hello-world.wav", "demo-congrats.wav", "vm-goodbye.wav"] {
        let path = dir.join(prompt);
        let file = std::fs::File::open(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (install asterisk-core-sounds-en-wav)", path.display()));
        let audio = read(Format::Wav, file).unwrap();
        assert_eq!(audio.rate, 8000, "{prompt}");
        assert!(audio.samples.len() > 4000, "{prompt}: at least half a second");
        let peak = audio.samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!(peak > 1000, "{prompt}: not silence (peak {peak})");
    }
}
